//! The commands: a request's arguments parsed into a [`Command`], then run by its family's
//! handler, one file per family:
//!
//! * `strings.rs`: GET, SET, APPEND, INCR, INCRBY, DECR, DECRBY, MGET, MSET.
//! * `keys.rs`: DEL, EXISTS (commands on keys whatever their values).
//! * `connection.rs`: AUTH, HELLO, PING, ECHO, SELECT, CLIENT, QUIT.
//! * `server.rs`: INFO, CONFIG GET, COMMAND, DBSIZE, FLUSHALL, FLUSHDB.
//!
//! A handler takes the router, the connection and the command's fields, and returns a
//! [`Reply`]. [`Router::request`] is the one place a command reaches its handler: the `match`
//! in `dispatch` names every command, so a command added to `flotilla-resp` does not compile
//! until it has an arm here. A new family is a new file and its `mod` line below.

mod connection;
mod keys;
mod server;
mod strings;

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

/// Runs `cmd` for `conn`: first the rules that hold commands back (authentication), then the
/// command's handler.
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
    let reply = match cmd {
        C::Get { key } => strings::get(r, conn, key).await,
        C::Set {
            key,
            value,
            options,
        } => strings::set(r, conn, key, value, options).await,
        C::Append { key, value } => strings::append(r, conn, key, value).await,
        C::Incr { key } => strings::incr_by(r, conn, key, 1).await,
        C::Decr { key } => strings::incr_by(r, conn, key, -1).await,
        C::IncrBy { key, delta } => strings::incr_by(r, conn, key, delta).await,
        C::DecrBy { key, delta } => strings::decr_by(r, conn, key, delta).await,
        C::MGet { keys } => strings::mget(r, conn, keys).await,
        C::MSet { pairs } => strings::mset(r, conn, pairs).await,

        C::Del { keys } => keys::del(r, conn, keys).await,
        C::Exists { keys } => keys::exists(r, conn, keys).await,

        C::Auth { username, password } => connection::auth(r, conn, username, &password),
        C::Hello(h) => connection::hello(r, conn, h),
        C::Ping { message } => connection::ping(message),
        C::Echo { message } => connection::echo(message),
        C::Select { db } => connection::select(db),
        C::Client(c) => connection::client(conn, c),
        C::Quit => return (connection::quit(), After::Close),

        C::Info { sections } => server::info(r, &sections),
        C::ConfigGet { patterns } => server::config_get(r, &patterns),
        C::Command(q) => server::command(q),
        C::DbSize | C::FlushAll { .. } | C::FlushDb { .. } => server::unsupported(cmd.name()),
    };
    (reply.unwrap_or_else(|e| e), After::Continue)
}

/// The commands parsed but answered "not supported" (their arm below calls
/// [`server::unsupported`]): `COMMAND` leaves them out, as Redis leaves out commands it does
/// not have. The router test `command_lists_what_dispatch_runs` checks that this list and the
/// arms agree.
const UNSUPPORTED: &[&str] = &["dbsize", "flushall", "flushdb"];

/// A reply of the service that its command never gets: a bug, reported to the client rather
/// than crashing the router.
fn unexpected(r: KvReply) -> Value {
    Value::error(format!("ERR internal error: unexpected reply {r:?}"))
}
