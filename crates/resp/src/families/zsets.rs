//! Sorted sets: the specs of the `sorted_set` group's commands (as Redis's `COMMAND INFO` gives them).

#[allow(unused_imports)]
use crate::parse::{data, CommandSpec, READ_FAST, WRITE_FAST};

pub(crate) const ZSETS: &[CommandSpec] = &[];
