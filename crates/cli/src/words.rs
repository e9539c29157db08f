//! How the binary words the client library's errors for people.

use flotilla_client::ClientError;

/// What went wrong with a call to the shard controller (`ctl` and `up`).
pub fn controller(e: ClientError) -> String {
    match e {
        ClientError::Timeout(limit) => format!(
            "no answer from the controller within {limit:?} (is a majority of its replicas up?)"
        ),
        ClientError::Service(e) => format!("the controller cannot answer: {e}"),
        ClientError::Refused(e) => format!("the controller refused: {e}"),
        ClientError::Stopped => "the clerk host stopped".into(),
        other => other.to_string(),
    }
}
