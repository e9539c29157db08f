//! Checks shared by the key/value lab scenarios (the labs' `checkClntAppends`,
//! `checkConcurrentAppends`, `NextValue`).

/// The value a client appends as its `j`-th operation.
pub fn append_value(client: usize, j: usize) -> String {
    format!("x {client} {j} y")
}

/// Client `client`'s `count` appends are all in `v`, each once, in order.
pub fn check_client_appends(client: usize, v: &str, count: usize) {
    let mut last = None;
    for j in 0..count {
        let wanted = append_value(client, j);
        let Some(off) = v.find(&wanted) else {
            panic!("client {client}: missing element {wanted:?} in append result {v:?}");
        };
        let off1 = v.rfind(&wanted).expect("found above");
        assert_eq!(
            off, off1,
            "client {client}: duplicate element {wanted:?} in append result"
        );
        if let Some(l) = last {
            assert!(
                off > l,
                "client {client}: wrong order for element {wanted:?} in append result"
            );
        }
        last = Some(off);
    }
}

/// For every client i, its `counts[i]` appends are in `v`, each once, in order.
pub fn check_concurrent_appends(v: &str, counts: &[usize]) {
    for (client, &count) in counts.iter().enumerate() {
        check_client_appends(client, v, count);
    }
}

/// The labs' `inHistory`: whether `value` was appended into `history` (an old value).
pub fn in_history(value: &str, history: &str) -> bool {
    history.contains(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_checks_catch_missing_duplicate_and_reordered_elements() {
        let ok = format!(
            "{}{}{}",
            append_value(0, 0),
            append_value(1, 0),
            append_value(0, 1)
        );
        check_concurrent_appends(&ok, &[2, 1]);
        let missing = append_value(0, 0);
        assert!(std::panic::catch_unwind(|| check_client_appends(0, &missing, 2)).is_err());
        let dup = format!("{}{}", append_value(0, 0), append_value(0, 0));
        assert!(std::panic::catch_unwind(|| check_client_appends(0, &dup, 1)).is_err());
        let reordered = format!("{}{}", append_value(0, 1), append_value(0, 0));
        assert!(std::panic::catch_unwind(|| check_client_appends(0, &reordered, 2)).is_err());
    }
}
