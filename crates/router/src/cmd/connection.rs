//! Commands on the connection itself: AUTH, HELLO, PING, ECHO, SELECT, CLIENT, RESET, QUIT.
//! None reaches the service; they read and change the [`Conn`].

use flotilla_resp::{ClientCommand, Hello, Protocol, Value};

use super::Reply;
use crate::conn::Conn;
use crate::listener::Router;

/// `AUTH [username] password`: only the `default` user, with the router's password. Without
/// a password the answers are Redis 7's, whose `default` user is then `nopass`: any password
/// is right for it, `AUTH password` alone is an error, and any other user does not exist.
pub(super) fn auth(
    r: &Router,
    conn: &mut Conn,
    username: Option<Vec<u8>>,
    password: &[u8],
) -> Reply {
    let wrongpass = || {
        Err(Value::error(
            "WRONGPASS invalid username-password pair or user is disabled.",
        ))
    };
    let user_ok = username.as_deref().is_none_or(|u| u == b"default");
    let Some(expected) = &r.cfg.password else {
        return match username {
            None => Err(Value::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            )),
            Some(_) if user_ok => Ok(Value::ok()),
            Some(_) => wrongpass(),
        };
    };
    if user_ok && constant_time_eq(password, expected.as_bytes()) {
        conn.authenticated = true;
        Ok(Value::ok())
    } else {
        wrongpass()
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME name]]`: authenticates (or insists the
/// connection is), then switches protocol and names the connection; replies with the server's
/// description in the (new) protocol.
pub(super) fn hello(r: &Router, conn: &mut Conn, h: Hello) -> Reply {
    if let Some((user, pass)) = h.auth {
        auth(r, conn, Some(user), &pass)?;
    } else if !conn.authenticated {
        return Err(Value::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"));
    }
    if let Some(p) = h.protocol {
        conn.proto = p;
    }
    if let Some(n) = h.setname {
        conn.name = Some(n);
    }
    let field = |k: &str, v: Value| (Value::bulk(k), v);
    Ok(Value::Map(vec![
        field("server", Value::bulk("redis")),
        field("version", Value::bulk("7.0.0")),
        field("proto", Value::Integer(conn.proto.version())),
        field("id", Value::Integer(conn.id as i64)),
        field("mode", Value::bulk("standalone")),
        field("role", Value::bulk("master")),
        field("modules", Value::Array(Vec::new())),
    ]))
}

/// `PING [message]`.
pub(super) fn ping(message: Option<Vec<u8>>) -> Reply {
    Ok(match message {
        None => Value::simple("PONG"),
        Some(m) => Value::bulk(m),
    })
}

/// `ECHO message`.
pub(super) fn echo(message: Vec<u8>) -> Reply {
    Ok(Value::bulk(message))
}

/// `SELECT db`: there is one database, 0.
pub(super) fn select(db: i64) -> Reply {
    match db {
        0 => Ok(Value::ok()),
        _ => Err(Value::error("ERR DB index is out of range")),
    }
}

/// `CLIENT SETNAME | GETNAME | ID | INFO | SETINFO`.
pub(super) fn client(conn: &mut Conn, c: ClientCommand) -> Reply {
    Ok(match c {
        ClientCommand::SetName { name } => {
            conn.name = Some(name);
            Value::ok()
        }
        ClientCommand::GetName => conn.name.clone().map_or(Value::Null, Value::Bulk),
        ClientCommand::Id => Value::Integer(conn.id as i64),
        ClientCommand::Info => Value::bulk(format!(
            "id={} addr={} name={} db=0 resp={}\n",
            conn.id,
            conn.addr,
            String::from_utf8_lossy(conn.name.as_deref().unwrap_or_default()),
            conn.proto.version()
        )),
        // Accepted and forgotten: client libraries send it on connecting.
        ClientCommand::SetInfo { .. } => Value::ok(),
    })
}

/// `RESET`: the connection as it was on connecting, as Redis 6.2+ does it: any transaction
/// discarded, no watched keys, RESP2, no name, and the default user again (so, with a
/// password, not authenticated). The clerk stays: it is the router's, not the client's state.
pub(super) fn reset(r: &Router, conn: &mut Conn) -> Reply {
    conn.tx = None;
    conn.watched.clear();
    conn.proto = Protocol::Resp2;
    conn.name = None;
    conn.authenticated = r.cfg.password.is_none();
    Ok(Value::simple("RESET"))
}

/// `QUIT`'s reply; the caller closes the connection after it.
pub(super) fn quit() -> Value {
    Value::ok()
}

/// Compares a password without a timing that tells how much of it matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_resp::ClientAttr;

    #[test]
    fn passwords_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn client_names_and_describes_the_connection() {
        let mut conn = Conn::new(7, "127.0.0.1:5000".into(), true);
        assert_eq!(client(&mut conn, ClientCommand::GetName), Ok(Value::Null));
        let name = b"worker".to_vec();
        let set = ClientCommand::SetName { name: name.clone() };
        assert_eq!(client(&mut conn, set), Ok(Value::ok()));
        assert_eq!(
            client(&mut conn, ClientCommand::GetName),
            Ok(Value::Bulk(name))
        );
        assert_eq!(client(&mut conn, ClientCommand::Id), Ok(Value::Integer(7)));
        conn.proto = Protocol::Resp3;
        assert_eq!(
            client(&mut conn, ClientCommand::Info),
            Ok(Value::bulk(
                "id=7 addr=127.0.0.1:5000 name=worker db=0 resp=3\n"
            ))
        );
        let setinfo = ClientCommand::SetInfo {
            attr: ClientAttr::LibName,
            value: b"redis-py".to_vec(),
        };
        assert_eq!(client(&mut conn, setinfo), Ok(Value::ok()));
    }

    #[test]
    fn only_database_zero_exists() {
        assert_eq!(select(0), Ok(Value::ok()));
        assert_eq!(select(1), Err(Value::error("ERR DB index is out of range")));
        assert_eq!(ping(None), Ok(Value::simple("PONG")));
        assert_eq!(ping(Some(b"hi".to_vec())), Ok(Value::bulk("hi")));
        assert_eq!(echo(b"hey".to_vec()), Ok(Value::bulk("hey")));
    }
}
