//! The commands: a request's arguments parsed into a [`Command`], then run by its family's
//! handler, one file per family:
//!
//! * `data.rs`: every key/value command (GET, SET, EXPIRE, SCAN …), which the service's
//!   engine runs; the router only decides where.
//! * `tx.rs`: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//! * `connection.rs`: AUTH, HELLO, PING, ECHO, SELECT, CLIENT, RESET, QUIT.
//! * `server.rs`: INFO, CONFIG, COMMAND, TIME, LASTSAVE, SAVE, BGSAVE, DEBUG PROTOCOL.
//!
//! A handler takes the router, the connection and the command's fields, and returns a
//! [`Reply`]. [`Router::request`] is the one place a command reaches its handler: the `match`
//! in `dispatch` names every command, so a command added to `flotilla-resp` does not compile
//! until it has an arm here. A new family is a new file and its `mod` line below.

mod blocking;
mod connection;
pub(crate) use blocking::blocks;
mod data;
mod limits;
mod pipeline;
pub(crate) use pipeline::Batch;
mod server;
mod tx;

use std::sync::atomic::Ordering;
use std::time::Instant;

use flotilla_kv::KvReply;
use flotilla_resp::{find_command, Command, CommandError, Value};

use crate::conn::{After, Conn};
use crate::listener::Router;
use crate::stats::Outcome;

/// A handler's answer; `Err` is an error reply, so that `?` ends a handler on the first error
/// (as the service's errors do, through [`Router::call`]).
type Reply = Result<Value, Value>;

impl Router {
    /// Parses and runs one request; counts it in the metrics and in INFO's statistics by
    /// command name.
    pub(crate) async fn request(&self, conn: &mut Conn, args: Vec<Vec<u8>>) -> (Value, After) {
        let started = Instant::now();
        match self.parse(conn, args, started) {
            Ok(cmd) => self.run_command(conn, cmd, started).await,
            Err(reply) => (reply, After::Continue),
        }
    }

    /// Parses a request received at `started`; a request that does not parse is answered
    /// (`Err`, counted in the statistics), and the connection goes on.
    pub(crate) fn parse(
        &self,
        conn: &mut Conn,
        args: Vec<Vec<u8>>,
        started: Instant,
    ) -> Result<Command, Value> {
        // The command named, for the statistics of a request that does not parse.
        let named = args.first().and_then(|n| find_command(n)).map(|s| s.name);
        match Command::from_args(args) {
            Ok(c) => Ok(c),
            // An unknown command, a wrong arity, a bad number: answered, and the connection
            // goes on.
            Err(e) => {
                self.observe("unknown", started, true);
                if let Some(tx) = &mut conn.tx {
                    tx.failed = true;
                }
                let reply = e.to_value();
                // As Redis counts them: a wrong arity is a rejected call of the command, an
                // argument it cannot parse a failed one (Redis parses options as it runs),
                // an unknown command or subcommand only an error.
                let (command, outcome) = match e {
                    CommandError::WrongArity(name) => (Some(name), Outcome::Rejected),
                    CommandError::Empty
                    | CommandError::Unknown { .. }
                    | CommandError::UnknownSubcommand { .. } => (None, Outcome::Rejected),
                    _ => (named, Outcome::Failed),
                };
                self.count(command, outcome, started, &reply);
                Err(reply)
            }
        }
    }

    /// Runs a parsed request (received at `started`) and counts it.
    pub(crate) async fn run_command(
        &self,
        conn: &mut Conn,
        cmd: Command,
        started: Instant,
    ) -> (Value, After) {
        let name = cmd.name();
        let (reply, after, outcome) = match gate(conn, &cmd) {
            Some(refusal) => (refusal, After::Continue, Outcome::Rejected),
            None => {
                let (reply, after) = dispatch(self, conn, cmd).await;
                let outcome = match reply {
                    Value::Error(_) => Outcome::Failed,
                    _ => Outcome::Ok,
                };
                (reply, after, outcome)
            }
        };
        self.observe(name, started, matches!(reply, Value::Error(_)));
        self.count(Some(name), outcome, started, &reply);
        (reply, after)
    }

    fn observe(&self, command: &str, started: Instant, error: bool) {
        if let Some(m) = &self.cfg.metrics {
            m.observe_command(command, started.elapsed(), error);
        }
    }

    /// Counts a command in INFO's commandstats, errorstats and latencystats.
    fn count(
        &self,
        command: Option<&'static str>,
        outcome: Outcome,
        started: Instant,
        reply: &Value,
    ) {
        let error = match reply {
            Value::Error(e) => Some(e.as_str()),
            _ => None,
        };
        let mut stats = self.stats.lock().expect("stats lock");
        stats.record(command, outcome, started.elapsed(), error);
    }
}

/// The rules that refuse a command before it runs (Redis's `rejected_calls`): a connection
/// not authenticated runs only AUTH, HELLO, QUIT and RESET; a transaction does not take a
/// command flagged `no_multi` (SAVE), and is then discarded at EXEC, as Redis does.
fn gate(conn: &mut Conn, cmd: &Command) -> Option<Value> {
    use Command as C;
    let allowed = matches!(cmd, C::Auth { .. } | C::Hello(_) | C::Quit | C::Reset);
    if !conn.authenticated && !allowed {
        return Some(Value::error("NOAUTH Authentication required."));
    }
    if let Some(tx) = &mut conn.tx {
        let no_multi =
            find_command(cmd.name().as_bytes()).is_some_and(|s| s.flags.contains(&"no_multi"));
        if no_multi {
            tx.failed = true;
            return Some(Value::error("ERR Command not allowed inside a transaction"));
        }
    }
    None
}

/// Runs `cmd` for `conn` (which [`gate`] let through): queued if a transaction is open, else
/// its handler.
async fn dispatch(r: &Router, conn: &mut Conn, cmd: Command) -> (Value, After) {
    r.commands_processed.fetch_add(1, Ordering::Relaxed);
    use Command as C;
    let queues = !matches!(
        cmd,
        C::Exec | C::Discard | C::Multi | C::Watch { .. } | C::Quit | C::Reset
    );
    if conn.tx.is_some() && queues {
        return (tx::queue(r, conn, cmd).await, After::Continue);
    }
    let reply = match cmd {
        C::Data { name, args } => match limits::refusal(r, conn, limits::flags_of(&args)).await {
            Some(refused) => Err(refused),
            None if blocking::blocks(&args) => blocking::run(r, conn, name, args).await,
            None => {
                let woken = wakes(r, &args);
                let reply = data::run(r, conn, name, args).await;
                if let Some(keys) = woken {
                    r.wakeups.wake(keys.iter().map(Vec::as_slice));
                }
                reply
            }
        },
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
        C::Reset => connection::reset(r, conn),
        C::Quit => return (connection::quit(), After::Close),

        C::Info { sections } => server::info(r, conn, &sections).await,
        C::ConfigGet { patterns } => server::config_get(r, &patterns),
        C::ConfigSet { pairs } => server::config_set(r, pairs),
        C::FunctionFlush => Ok(Value::ok()),
        C::Command(q) => server::command(q),
        C::Time => server::time(),
        C::LastSave => server::lastsave(),
        C::Save => server::save(),
        C::BgSave => server::bgsave(),
        C::Shutdown => server::shutdown(),
        C::DebugProtocol { kind } => server::debug_protocol(&kind),
        C::DebugOther { sub, args } => server::debug_other(r, conn, &sub, args).await,
    };
    (reply.unwrap_or_else(|e| e), After::Continue)
}

/// The keys a write command may wake blocked clients on (`wakeups.rs`); `None` for a read,
/// or when no client is blocked.
fn wakes(r: &Router, args: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if r.wakeups.is_idle() {
        return None;
    }
    let spec = flotilla_resp::command_spec(args).filter(|s| s.flags.contains(&"write"))?;
    Some(
        spec.key_positions(args)
            .into_iter()
            .map(|i| args[i].clone())
            .collect(),
    )
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
