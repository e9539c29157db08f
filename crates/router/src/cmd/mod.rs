//! The commands: a request's arguments parsed into a [`Command`], then run by its family's
//! handler, one file per family:
//!
//! * `data.rs`: every key/value command (GET, SET, EXPIRE, SCAN …), which the service's
//!   engine runs; the router only decides where.
//! * `tx.rs`: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//! * `connection.rs`: AUTH, HELLO, PING, ECHO, SELECT, CLIENT, QUIT.
//! * `server.rs`: INFO, CONFIG GET, COMMAND.
//!
//! A handler takes the router, the connection and the command's fields, and returns a
//! [`Reply`]. [`Router::request`] is the one place a command reaches its handler: the `match`
//! in `dispatch` names every command, so a command added to `flotilla-resp` does not compile
//! until it has an arm here. A new family is a new file and its `mod` line below.

mod connection;
mod data;
mod server;
mod tx;

use std::sync::atomic::Ordering;
use std::time::Instant;

use flotilla_kv::KvReply;
use flotilla_resp::{Command, Value};

use crate::conn::{After, Conn};
use crate::listener::Router;

/// A handler's answer; `Err` is an error reply, so that `?` ends a handler on the first error
/// (as the service's errors do, through [`Router::call`]).
type Reply = Result<Value, Value>;

impl Router {
    /// Parses and runs one request; counts it in the metrics by command name.
    pub(crate) async fn request(&self, conn: &mut Conn, args: Vec<Vec<u8>>) -> (Value, After) {
        let started = Instant::now();
        let cmd = match Command::from_args(args) {
            Ok(c) => c,
            // An unknown command, a wrong arity, a bad number: answered, and the connection
            // goes on.
            Err(e) => {
                self.observe("unknown", started, true);
                if let Some(tx) = &mut conn.tx {
                    tx.failed = true;
                }
                return (e.to_value(), After::Continue);
            }
        };
        let name = cmd.name();
        let (reply, after) = dispatch(self, conn, cmd).await;
        self.observe(name, started, matches!(reply, Value::Error(_)));
        (reply, after)
    }

    fn observe(&self, command: &str, started: Instant, error: bool) {
        if let Some(m) = &self.cfg.metrics {
            m.observe_command(command, started.elapsed(), error);
        }
    }
}

/// Runs `cmd` for `conn`: first the rules that hold commands back (authentication, a
/// transaction queueing them), then the command's handler.
async fn dispatch(r: &Router, conn: &mut Conn, cmd: Command) -> (Value, After) {
    let allowed = matches!(
        cmd,
        Command::Auth { .. } | Command::Hello(_) | Command::Quit
    );
    if !conn.authenticated && !allowed {
        return (
            Value::error("NOAUTH Authentication required."),
            After::Continue,
        );
    }
    r.commands_processed.fetch_add(1, Ordering::Relaxed);
    use Command as C;
    let queues = !matches!(
        cmd,
        C::Exec | C::Discard | C::Multi | C::Watch { .. } | C::Quit
    );
    if conn.tx.is_some() && queues {
        return (tx::queue(r, conn, cmd), After::Continue);
    }
    let reply = match cmd {
        C::Data { name, args } => data::run(r, conn, name, args).await,
        C::Multi => tx::multi(conn),
        C::Exec => tx::exec(r, conn).await,
        C::Discard => tx::discard(conn),
        C::Watch { keys } => tx::watch(r, conn, keys).await,
        C::Unwatch => tx::unwatch(conn),

        C::Auth { username, password } => connection::auth(r, conn, username, &password),
        C::Hello(h) => connection::hello(r, conn, h),
        C::Ping { message } => connection::ping(message),
        C::Echo { message } => connection::echo(message),
        C::Select { db } => connection::select(db),
        C::Client(c) => connection::client(conn, c),
        C::Quit => return (connection::quit(), After::Close),

        C::Info { sections } => server::info(r, &sections),
        C::ConfigGet { patterns } => server::config_get(r, &patterns),
        C::ConfigSet { pairs } => server::config_set(r, pairs),
        C::FunctionFlush => Ok(Value::ok()),
        C::Command(q) => server::command(q),
    };
    (reply.unwrap_or_else(|e| e), After::Continue)
}

/// A reply of the service that its command never gets: a bug, reported to the client rather
/// than crashing the router.
fn unexpected(r: KvReply) -> Value {
    Value::error(format!("ERR internal error: unexpected reply {r:?}"))
}

fn wrong_arity(name: &str) -> Value {
    Value::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}
