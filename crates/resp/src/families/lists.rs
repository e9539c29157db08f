//! Lists: the specs of the `list` group's commands (as Redis's `COMMAND INFO` gives them).

use crate::parse::{data, CommandSpec, READ_FAST, WRITE_FAST};

/// What the blocking pops are flagged with (BLMOVE and BRPOPLPUSH also `denyoom`).
const BLOCKING: &[&str] = &["write", "noscript", "blocking"];
const BLOCKING_MOVE: &[&str] = &["write", "denyoom", "noscript", "blocking"];

/// The push and pop commands first: they are what `redis-benchmark` and queues use most.
pub(crate) const LISTS: &[CommandSpec] = &[
    data("lpush", -3)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("list", "1.0.0", "Prepend one or multiple elements to a list"),
    data("rpush", -3)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("list", "1.0.0", "Append one or multiple elements to a list"),
    data("lpop", -2)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc("list", "1.0.0", "Remove and get the first elements in a list"),
    data("rpop", -2)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc("list", "1.0.0", "Remove and get the last elements in a list"),
    data("lrange", 4)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("list", "1.0.0", "Get a range of elements from a list"),
    data("llen", 2)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("list", "1.0.0", "Get the length of a list"),
    data("lpushx", -3)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("list", "2.2.0", "Prepend an element to a list, only if the list exists"),
    data("rpushx", -3)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc("list", "2.2.0", "Append an element to a list, only if the list exists"),
    data("lindex", 3)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("list", "1.0.0", "Get an element from a list by its index"),
    data("lset", 4)
        .flags(&["write", "denyoom"])
        .keys(1, 1, 1)
        .doc("list", "1.0.0", "Set the value of an element in a list by its index"),
    data("lrem", 4)
        .flags(&["write"])
        .keys(1, 1, 1)
        .doc("list", "1.0.0", "Remove elements from a list"),
    data("ltrim", 4)
        .flags(&["write"])
        .keys(1, 1, 1)
        .doc("list", "1.0.0", "Trim a list to the specified range"),
    data("linsert", 5)
        .flags(&["write", "denyoom"])
        .keys(1, 1, 1)
        .doc("list", "2.2.0", "Insert an element before or after another element in a list"),
    data("lpos", -3)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc("list", "6.0.6", "Return the index of matching elements on a list"),
    data("lmove", 5)
        .flags(&["write", "denyoom"])
        .keys(1, 2, 1)
        .doc("list", "6.2.0", "Pop an element from a list, push it to another list and return it"),
    data("rpoplpush", 3)
        .flags(&["write", "denyoom"])
        .keys(1, 2, 1)
        .doc("list", "1.2.0", "Remove the last element in a list, prepend it to another list and return it"),
    data("lmpop", -4)
        .flags(&["write", "movablekeys"])
        .numkeys(1)
        .doc("list", "7.0.0", "Pop elements from a list"),
    data("blpop", -3)
        .flags(BLOCKING)
        .keys(1, -2, 1)
        .doc("list", "2.0.0", "Remove and get the first element in a list, or block until one is available"),
    data("brpop", -3)
        .flags(BLOCKING)
        .keys(1, -2, 1)
        .doc("list", "2.0.0", "Remove and get the last element in a list, or block until one is available"),
    data("blmove", 6)
        .flags(BLOCKING_MOVE)
        .keys(1, 2, 1)
        .doc("list", "6.2.0", "Pop an element from a list, push it to another list and return it; or block until one is available"),
    data("brpoplpush", 4)
        .flags(BLOCKING_MOVE)
        .keys(1, 2, 1)
        .doc("list", "2.2.0", "Pop an element from a list, push it to another list and return it; or block until one is available"),
    data("blmpop", -5)
        .flags(&["write", "blocking", "movablekeys"])
        .numkeys(2)
        .doc("list", "7.0.0", "Pop elements from a list, or block until one is available"),
];
