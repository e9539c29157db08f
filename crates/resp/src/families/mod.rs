//! The command tables of the data types beyond strings and hashes, one file per family (the
//! core table, with strings, hashes, the generic and server commands, is in `parse.rs`).
//! Every entry is a data command ([`crate::Command::Data`]): its arity, flags and keys route
//! it, and the service's engine parses and runs it.

pub(crate) mod lists;
pub(crate) mod sets;
pub(crate) mod streams;
pub(crate) mod zsets;
