//! The client side of a replicated service: a clerk per logical client, and a host process
//! that runs many of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use flotilla_node::{Ctx, NodeId, Process};

use crate::msg::{ClientId, Msg, Request, Response, RsmError};

/// Clerk timing, in driver ticks (10 ms in Flotilla's drivers).
#[derive(Clone, Debug)]
pub struct ClerkConfig {
    /// Resend to the next server when a request has had no answer for this long. A leader
    /// cut off in a minority holds requests it can never commit, so this bounds how long a
    /// client sticks with it.
    pub retry_ticks: u32,
    /// After every server in turn refused (an election is under way), wait this long before
    /// the next round instead of spinning at network speed.
    pub round_backoff_ticks: u32,
    /// A clerk that has heard from no server for this long (by the driver's clock) starts
    /// its next operation unstamped, and so first learns the service's clock (one extra
    /// round trip): its old stamp may be below the expiry watermark although its operation
    /// is new. Far below any session idle limit. In ms (not ticks: an idle clerk is not
    /// ticked, so this is measured on the driver's clock).
    pub stamp_fresh_ms: u32,
}

impl Default for ClerkConfig {
    fn default() -> Self {
        ClerkConfig {
            retry_ticks: 20,
            round_backoff_ticks: 5,
            stamp_fresh_ms: 60_000,
        }
    }
}

/// The one request a clerk has in flight.
#[derive(Clone, Debug)]
struct Outstanding<C> {
    seq: u64,
    /// The stamp every copy carries ([`Request::after_ms`]); fixed once non-zero. A copy
    /// stamped 0 is never applied, so a 0 may be replaced by the first time heard.
    after_ms: u64,
    cmd: C,
    /// Index into `servers` of the server the latest copy went to.
    target: usize,
    /// Index into `servers` of the round-robin position: it moves one server on whenever a
    /// refusal gives no hint to follow, never with a hint. Hints alone could trap the clerk:
    /// two removed servers that never hear from a leader again can point at each other (or
    /// one at the other, the other at nobody) forever.
    cursor: usize,
    /// The latest copy went to a server a refusal hinted at. A refusal from it is then not
    /// followed by another hint, so the cursor moves at least every other refusal and every
    /// server is tried within two rounds.
    hinted: bool,
    /// Ticks since the latest copy was sent.
    waited: u32,
    /// Servers tried since the last backoff.
    hops: usize,
    /// Ticks left before the next copy may go out (0: not backing off).
    backoff: u32,
    /// Indexes into `servers` of those that answered this operation "disk full" (and have
    /// not answered otherwise since).
    full: BTreeSet<usize>,
    /// Indexes into `servers` of those a copy went to without an answer in time (and that
    /// have not answered since).
    silent: BTreeSet<usize>,
}

impl<C> Outstanding<C> {
    /// The group can make no progress on this operation for want of disk space: a majority
    /// of the servers said their disk is full (a commit needs a majority's writes), or every
    /// server said so or stayed silent. Retrying then only runs the caller's clock out.
    fn out_of_space(&self, servers: usize) -> bool {
        let full = self.full.len();
        full > servers / 2 || (full > 0 && full + self.silent.len() >= servers)
    }
}

/// One logical client of a replicated service.
///
/// Invariants: at most one operation outstanding; each operation gets the next sequence
/// number, and every copy of it carries the same one, so the service applies it once; every
/// copy carries the same non-zero stamp (`after_ms`), or 0 until the clerk has heard a time.
///
/// Sessions expire (the `session` module of this crate): an operation refused with
/// [`RsmError::SessionExpired`] ends with that error (its outcome is unknown); the clerk
/// keeps its id, and its next operation, stamped with the time that answer brought, starts a
/// new session (copies of the refused one stay refused: see the module).
#[derive(Clone, Debug)]
pub struct Clerk<C> {
    id: ClientId,
    servers: Vec<NodeId>,
    /// Index into `servers` of the server that answered last: the presumed leader.
    leader: usize,
    seq: u64,
    /// The highest replicated clock a response brought: the stamp of the next operation.
    seen_ms: u64,
    /// When (driver clock) a response last came: `seen_ms` is fresh until
    /// `cfg.stamp_fresh_ms` after it.
    heard_at: Option<std::time::Duration>,
    op: Option<Outstanding<C>>,
    cfg: ClerkConfig,
}

impl<C: Clone + Debug> Clerk<C> {
    pub fn new(id: ClientId, servers: Vec<NodeId>, cfg: ClerkConfig) -> Self {
        assert!(!servers.is_empty(), "clerk {id}: no servers to talk to");
        Clerk {
            id,
            servers,
            leader: 0,
            seq: 0,
            seen_ms: 0,
            heard_at: None,
            op: None,
            cfg,
        }
    }

    /// The highest replicated clock (ms) any server told this clerk.
    pub fn seen_ms(&self) -> u64 {
        self.seen_ms
    }

    /// The stamp for an operation started at `now` (driver clock): the time heard, if heard
    /// within `stamp_fresh_ms`, else 0 (unstamped: the first answer gives the time).
    pub fn fresh_stamp(&self, now: std::time::Duration) -> u64 {
        let window = std::time::Duration::from_millis(self.cfg.stamp_fresh_ms.into());
        let fresh = (self.heard_at).is_some_and(|t| now.saturating_sub(t) < window);
        if fresh {
            self.seen_ms
        } else {
            0
        }
    }

    pub fn id(&self) -> ClientId {
        self.id
    }

    pub fn is_busy(&self) -> bool {
        self.op.is_some()
    }

    /// Starts an operation and sends it to the presumed leader; returns its sequence number.
    /// Panics if one is already outstanding: a clerk is one sequential client.
    pub fn start<R, E>(&mut self, cmd: C, ctx: &mut Ctx<Msg<C, R>, E>) -> u64 {
        assert!(
            self.op.is_none(),
            "clerk {}: an operation is already outstanding",
            self.id
        );
        self.seq += 1;
        let after_ms = self.fresh_stamp(ctx.now());
        self.op = Some(Outstanding {
            seq: self.seq,
            after_ms,
            cmd,
            target: self.leader,
            cursor: self.leader,
            hinted: false,
            waited: 0,
            hops: 0,
            backoff: 0,
            full: BTreeSet::new(),
            silent: BTreeSet::new(),
        });
        self.send(ctx);
        self.seq
    }

    /// The server presumed to lead: the one that answered last (the first before any did).
    pub fn leader(&self) -> NodeId {
        self.servers[self.leader]
    }

    /// Replaces the servers this clerk may talk to (e.g. when a test reconnects it to more).
    pub fn set_servers(&mut self, servers: Vec<NodeId>) {
        self.set_servers_led_by(servers, None);
    }

    /// As [`Clerk::set_servers`], presuming `leader` leads if it is one of `servers` (a hint
    /// kept from an earlier time with them), else the first.
    pub fn set_servers_led_by(&mut self, servers: Vec<NodeId>, leader: Option<NodeId>) {
        assert!(
            !servers.is_empty(),
            "clerk {}: no servers to talk to",
            self.id
        );
        self.leader = (leader.and_then(|l| servers.iter().position(|&s| s == l))).unwrap_or(0);
        self.servers = servers;
        if let Some(op) = self.op.as_mut() {
            op.target %= self.servers.len();
            op.cursor %= self.servers.len();
        }
    }

    /// Gives up on the outstanding operation (its outcome stays unknown). The next operation
    /// gets a new sequence number.
    pub fn abandon(&mut self) {
        self.op = None;
    }

    fn send<R, E>(&mut self, ctx: &mut Ctx<Msg<C, R>, E>) {
        let op = self.op.as_mut().expect("sending needs an operation");
        op.waited = 0;
        let req = Request {
            client: self.id,
            seq: op.seq,
            after_ms: op.after_ms,
            cmd: op.cmd.clone(),
        };
        ctx.send(self.servers[op.target], Msg::Request(req));
    }

    /// Moves on to `next` (an index into `servers`), backing off after a full round.
    fn retry<R, E>(&mut self, next: usize, ctx: &mut Ctx<Msg<C, R>, E>) {
        let n = self.servers.len();
        let backoff = self.cfg.round_backoff_ticks;
        let op = self.op.as_mut().expect("retrying needs an operation");
        op.target = next;
        op.hinted = false;
        op.hops += 1;
        if op.hops >= n && backoff > 0 {
            op.hops = 0;
            op.backoff = backoff;
        } else {
            self.send(ctx);
        }
    }

    pub fn on_tick<R, E>(&mut self, ctx: &mut Ctx<Msg<C, R>, E>) {
        let retry_ticks = self.cfg.retry_ticks;
        let Some(op) = self.op.as_mut() else { return };
        if op.backoff > 0 {
            op.backoff -= 1;
            if op.backoff == 0 {
                self.send(ctx);
            }
            return;
        }
        op.waited += 1;
        if op.waited >= retry_ticks {
            op.silent.insert(op.target);
            op.cursor = (op.cursor + 1) % self.servers.len();
            let next = op.cursor;
            self.retry(next, ctx);
        }
    }

    /// Handles a server's response; returns the outcome if it completes the operation: the
    /// reply, or [`RsmError::DiskFull`] when the group cannot make progress for want of disk
    /// space (see `Outstanding::out_of_space`; the command's outcome is then unknown), or
    /// [`RsmError::SessionExpired`] (outcome unknown too).
    pub fn on_response<R, E>(
        &mut self,
        from: NodeId,
        resp: Response<R>,
        ctx: &mut Ctx<Msg<C, R>, E>,
    ) -> Option<Result<R, RsmError>> {
        self.seen_ms = self.seen_ms.max(resp.now_ms);
        self.heard_at = Some(ctx.now());
        let op = self.op.as_mut()?;
        if resp.seq != op.seq {
            return None; // a late answer to an earlier operation
        }
        if op.after_ms == 0 {
            op.after_ms = self.seen_ms;
        }
        let from_index = self.servers.iter().position(|&s| s == from)?;
        op.silent.remove(&from_index);
        if !matches!(resp.result, Err(RsmError::DiskFull)) {
            op.full.remove(&from_index);
        }
        match resp.result {
            Ok(reply) => {
                self.leader = from_index;
                self.op = None;
                Some(Ok(reply))
            }
            Err(RsmError::DiskFull) => {
                op.full.insert(from_index);
                if op.out_of_space(self.servers.len()) {
                    self.op = None;
                    return Some(Err(RsmError::DiskFull));
                }
                if from_index != op.target || op.backoff > 0 {
                    return None; // a late refusal from a server already left behind
                }
                // Another replica may still lead (or be elected): try the next one.
                let next = next_server(&mut op.cursor, from_index, self.servers.len());
                self.retry(next, ctx);
                None
            }
            Err(RsmError::WrongLeader { hint }) => {
                if from_index != op.target || op.backoff > 0 {
                    return None; // a late refusal from a server already left behind
                }
                let n = self.servers.len();
                let hinted = hint
                    .and_then(|h| self.servers.iter().position(|&s| s == h))
                    .filter(|&h| h != from_index && !op.hinted);
                if let Some(next) = hinted {
                    self.retry(next, ctx);
                    self.op.as_mut().expect("still outstanding").hinted = true;
                } else {
                    let op = self.op.as_mut().expect("still outstanding");
                    let next = next_server(&mut op.cursor, from_index, n);
                    self.retry(next, ctx);
                }
                None
            }
            Err(RsmError::SessionExpired) => {
                self.op = None;
                Some(Err(RsmError::SessionExpired))
            }
            Err(RsmError::Unstamped) => {
                if from_index == op.target && op.backoff == 0 {
                    // No copy stamped 0 is ever applied: stamp it now (with at least 1, a
                    // group whose clock is still 0) and resend.
                    op.after_ms = op.after_ms.max(1);
                    self.send(ctx);
                }
                None
            }
            Err(RsmError::Stale) => None,
        }
    }
}

/// A completed operation, reported by a [`ClerkHost`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClerkEvent<R> {
    pub client: ClientId,
    pub seq: u64,
    /// The reply, or why the service could not give one ([`RsmError::DiskFull`]).
    pub reply: Result<R, RsmError>,
}

/// A process that runs many clerks (a test driver's clients, or a router's): requests and
/// responses carry the client id, so one network endpoint serves them all.
pub struct ClerkHost<C, R> {
    clerks: BTreeMap<ClientId, Clerk<C>>,
    /// Clerks with an operation outstanding: only these need ticks.
    busy: BTreeSet<ClientId>,
    next_id: ClientId,
    cfg: ClerkConfig,
    _reply: std::marker::PhantomData<fn() -> R>,
}

impl<C: Clone + Debug, R> ClerkHost<C, R> {
    /// A host whose clerks get ids `first_id`, `first_id + 1`, …
    pub fn new(first_id: ClientId, cfg: ClerkConfig) -> Self {
        ClerkHost {
            clerks: BTreeMap::new(),
            busy: BTreeSet::new(),
            next_id: first_id,
            cfg,
            _reply: std::marker::PhantomData,
        }
    }

    /// Adds a clerk that talks to `servers`; returns its id.
    pub fn add_clerk(&mut self, servers: Vec<NodeId>) -> ClientId {
        let id = self.next_id;
        self.next_id += 1;
        self.clerks
            .insert(id, Clerk::new(id, servers, self.cfg.clone()));
        id
    }

    pub fn clerk(&self, id: ClientId) -> Option<&Clerk<C>> {
        self.clerks.get(&id)
    }

    /// The clerks' ids, in order.
    pub fn clerk_ids(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.clerks.keys().copied()
    }

    /// Starts an operation on clerk `id`; returns its sequence number.
    pub fn start(&mut self, id: ClientId, cmd: C, ctx: &mut Ctx<Msg<C, R>, ClerkEvent<R>>) -> u64 {
        let clerk = self
            .clerks
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no clerk {id} on this host"));
        self.busy.insert(id);
        clerk.start(cmd, ctx)
    }

    /// Replaces the servers clerk `id` may talk to.
    pub fn set_servers(&mut self, id: ClientId, servers: Vec<NodeId>) {
        if let Some(c) = self.clerks.get_mut(&id) {
            c.set_servers(servers);
        }
    }

    /// Removes clerk `id` (its client went away).
    pub fn remove_clerk(&mut self, id: ClientId) {
        self.clerks.remove(&id);
        self.busy.remove(&id);
    }

    /// Number of clerks.
    pub fn len(&self) -> usize {
        self.clerks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clerks.is_empty()
    }

    /// Gives up on clerk `id`'s outstanding operation.
    pub fn abandon(&mut self, id: ClientId) {
        if let Some(c) = self.clerks.get_mut(&id) {
            c.abandon();
        }
        self.busy.remove(&id);
    }
}

/// Moves a clerk's cursor to the next of `n` servers, passing over `refused` (the one that
/// just turned the operation away, when there is another), and returns it.
fn next_server(cursor: &mut usize, refused: usize, n: usize) -> usize {
    *cursor = (*cursor + 1) % n;
    if *cursor == refused && n > 1 {
        *cursor = (*cursor + 1) % n;
    }
    *cursor
}

impl<C: Clone + Debug, R> Process for ClerkHost<C, R> {
    type Msg = Msg<C, R>;
    type Event = ClerkEvent<R>;

    fn on_tick(&mut self, ctx: &mut Ctx<Msg<C, R>, ClerkEvent<R>>) {
        for id in &self.busy {
            if let Some(c) = self.clerks.get_mut(id) {
                c.on_tick(ctx);
            }
        }
    }

    fn on_message(
        &mut self,
        from: NodeId,
        msg: Msg<C, R>,
        ctx: &mut Ctx<Msg<C, R>, ClerkEvent<R>>,
    ) {
        let Msg::Response(resp) = msg else { return };
        let (client, seq) = (resp.client, resp.seq);
        let Some(clerk) = self.clerks.get_mut(&client) else {
            return;
        };
        if let Some(reply) = clerk.on_response(from, resp, ctx) {
            self.busy.remove(&client);
            ctx.emit(ClerkEvent { client, seq, reply });
        }
    }

    fn is_reply(msg: &Msg<C, R>) -> bool {
        msg.is_reply()
    }
}
