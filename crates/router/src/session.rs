//! One connection's loop: read what its client sends (within the shared budget, `input.rs`),
//! decode requests, answer them in order, write the replies, close when told to or idle.

use std::time::Instant;

use flotilla_resp::{Decoder, Limits, Value};
use flotilla_transport::tls::BoxIo;
use tokio::io::AsyncWriteExt;

use crate::cmd::Batch;
use crate::conn::{After, Conn};
use crate::input::{Fill, Input};
use crate::limits;
use crate::listener::Router;

/// Replies of pipelined requests gathered before they are written: enough for one write to
/// carry many small replies, small enough that a client not reading costs little.
const REPLIES_BATCH: usize = 64 << 10;

impl Router {
    /// Reads requests, answers them in order; pipelined replies go out together, in writes of
    /// [`REPLIES_BATCH`] or so.
    pub(crate) async fn session(&self, stream: &mut BoxIo, conn: &mut Conn) -> std::io::Result<()> {
        let mut decoder = match conn.authenticated {
            true => Decoder::new(limits()),
            false => Decoder::before_auth(limits(), Limits::UNAUTHENTICATED),
        };
        let mut input = Input::new(&self.budget, conn.id);
        let mut out = Vec::new();
        // Pipelined requests gathered to run as one entry (`cmd/pipeline.rs`): only ever
        // non-empty while more complete requests are being decoded from the input.
        let mut batch = Batch::default();
        loop {
            loop {
                match decoder.decode(input.unparsed()) {
                    Ok(Some((args, used))) => {
                        input.parsed(used);
                        let (reply, after) = if crate::cmd::blocks(&args) {
                            self.run_batch_out(conn, &mut batch, &mut input, &mut out)
                                .await;
                            match self.watching_close(stream, &mut input, conn, args).await? {
                                Some(answer) => answer,
                                // The client left while blocked: nothing to answer.
                                None => return Ok(()),
                            }
                        } else {
                            let started = Instant::now();
                            match self.parse(conn, args, started) {
                                // Did not parse: answered in its turn.
                                Err(reply) => {
                                    self.run_batch_out(conn, &mut batch, &mut input, &mut out)
                                        .await;
                                    (reply, After::Continue)
                                }
                                Ok(cmd) => match self.batchable(conn, cmd, started).await {
                                    // Answered when its batch runs, or now, alone.
                                    Ok(item) => {
                                        if !batch.admits(&item) {
                                            self.run_batch_out(
                                                conn, &mut batch, &mut input, &mut out,
                                            )
                                            .await;
                                        }
                                        if batch.admits(&item) {
                                            batch.push(item, used);
                                            continue;
                                        }
                                        // A read with no write before it: alone.
                                        let started = item.started();
                                        self.run_command(conn, item.into_command(), started).await
                                    }
                                    Err(cmd) => {
                                        self.run_batch_out(conn, &mut batch, &mut input, &mut out)
                                            .await;
                                        self.run_command(conn, cmd, started).await
                                    }
                                },
                            }
                        };
                        input.answered(used);
                        if conn.authenticated {
                            // Between requests, so the next one is judged by the full limits.
                            decoder.authenticated();
                        }
                        flotilla_resp::encode(&reply, conn.proto, &mut out);
                        if after == After::Close {
                            return self.write_out(stream, &mut out).await;
                        }
                        if out.len() >= REPLIES_BATCH {
                            // Before running the next request: a client that pipelines requests
                            // and does not read the replies must not make them pile up here.
                            self.write_out(stream, &mut out).await?;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The requests before the bad one are answered first, as they came.
                        self.run_batch_out(conn, &mut batch, &mut input, &mut out)
                            .await;
                        tracing::info!(addr = %conn.addr, "closing connection: {e}");
                        flotilla_resp::encode(&e.to_value(), conn.proto, &mut out);
                        return self.write_out(stream, &mut out).await;
                    }
                }
            }
            // Every complete request received is decoded: the batch runs before waiting
            // for more (a request's later part would never join it anyway).
            self.run_batch_out(conn, &mut batch, &mut input, &mut out)
                .await;
            self.write_out(stream, &mut out).await?;
            match input.fill(stream, self.cfg.idle_timeout).await? {
                Fill::Data(_) => {}
                Fill::Closed => return Ok(()),
                Fill::Idle => {
                    // Redis closes an idle client without a word.
                    tracing::debug!(addr = %conn.addr, "closing idle connection");
                    return Ok(());
                }
                Fill::TooLarge(max) => {
                    tracing::info!(addr = %conn.addr, "closing connection: request over {max} bytes");
                    let e = Value::error(format!("ERR Protocol error: request larger than the router's max-buffered-bytes ({max} bytes)"));
                    flotilla_resp::encode(&e, conn.proto, &mut out);
                    return self.write_out(stream, &mut out).await;
                }
            }
        }
    }

    /// Runs the batch, if any, and encodes its replies into `out`; its requests' input bytes
    /// go back.
    async fn run_batch_out(
        &self,
        conn: &mut Conn,
        batch: &mut Batch,
        input: &mut Input<'_>,
        out: &mut Vec<u8>,
    ) {
        if batch.is_empty() {
            return;
        }
        let bytes = batch.request_bytes();
        for reply in self.run_batch(conn, batch).await {
            flotilla_resp::encode(&reply, conn.proto, out);
        }
        input.answered(bytes);
    }

    /// Runs a request that may block for long (BLPOP …) while reading what the client sends
    /// meanwhile, so that a client closing its connection ends the wait (`None`) instead of
    /// leaving it blocked until its timeout, or forever. Pipelined requests read meanwhile
    /// wait their turn in `input`.
    async fn watching_close(
        &self,
        stream: &mut BoxIo,
        input: &mut Input<'_>,
        conn: &mut Conn,
        args: Vec<Vec<u8>>,
    ) -> std::io::Result<Option<(Value, After)>> {
        let request = self.request(conn, args);
        tokio::pin!(request);
        loop {
            tokio::select! {
                answer = &mut request => return Ok(Some(answer)),
                fill = input.fill(stream, None) => match fill? {
                    Fill::Closed => return Ok(None),
                    Fill::Data(_) => {}
                    // Nothing more can be read now: wait for the answer alone.
                    Fill::Idle | Fill::TooLarge(_) => return Ok(Some(request.await)),
                },
            }
        }
    }

    /// Writes `out` and empties it. With an idle timeout, a client that takes none of it for
    /// that long is idle too (Redis counts a successful write as interaction): the write fails
    /// with `TimedOut` and the connection closes, rather than holding its replies forever.
    async fn write_out(&self, stream: &mut BoxIo, out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut written = 0;
        while written < out.len() {
            let write = stream.write(&out[written..]);
            let n = match self.cfg.idle_timeout {
                Some(limit) => tokio::time::timeout(limit, write).await.map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "idle: the client took no reply bytes within the timeout",
                    )
                })??,
                None => write.await?,
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            written += n;
        }
        out.clear();
        Ok(())
    }
}
