//! Lists: the specs of the `list` group's commands (as Redis's `COMMAND INFO` gives them).

#[allow(unused_imports)]
use crate::parse::{data, CommandSpec, READ_FAST, WRITE_FAST};

pub(crate) const LISTS: &[CommandSpec] = &[];
