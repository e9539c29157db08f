//! Streams: the specs of the `stream` group's commands (as Redis's `COMMAND INFO` gives them).
//!
//! XREAD and XREADGROUP name their keys after the `STREAMS` keyword, half of the arguments
//! that follow it (the other half are IDs): neither a fixed key range nor a count argument
//! says where they are, so they carry Redis's keyword key spec (`keys_after`), and report
//! Redis's `0 0 0` range with the `movablekeys` flag.

use crate::parse::{container, data, spec, CommandSpec, READ_FAST, WRITE_FAST};

pub(crate) const STREAMS: &[CommandSpec] = &[
    data("xadd", -5)
        .flags(&["write", "denyoom", "fast"])
        .keys(1, 1, 1)
        .doc("stream", "5.0.0", "Appends a new entry to a stream"),
    data("xlen", 2)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc("stream", "5.0.0", "Return the number of entries in a stream"),
    data("xrange", -4)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "stream",
            "5.0.0",
            "Return a range of elements in a stream, with IDs matching the specified IDs interval",
        ),
    data("xrevrange", -4)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "stream",
            "5.0.0",
            "Return a range of elements in a stream, with IDs matching the specified IDs interval, in reverse order (from greater to smaller IDs) compared to XRANGE",
        ),
    data("xdel", -3)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc(
            "stream",
            "5.0.0",
            "Removes the specified entries from the stream. Returns the number of items actually deleted, that may be different from the number of IDs passed in case certain IDs do not exist.",
        ),
    data("xtrim", -4)
        .flags(&["write"])
        .keys(1, 1, 1)
        .doc(
            "stream",
            "5.0.0",
            "Trims the stream to (approximately if '~' is passed) a certain size",
        ),
    data("xread", -4)
        .flags(&["readonly", "blocking", "movablekeys"])
        .keys_after("streams", 1)
        .doc(
            "stream",
            "5.0.0",
            "Return never seen elements in multiple streams, with IDs greater than the ones reported by the caller for each stream. Can block.",
        ),
    data("xsetid", -3)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc(
            "stream",
            "5.0.0",
            "An internal command for replicating stream values",
        ),
    data("xreadgroup", -7)
        .flags(&["write", "blocking", "movablekeys"])
        .keys_after("streams", 4)
        .doc(
            "stream",
            "5.0.0",
            "Return new entries from a stream using a consumer group, or access the history of the pending entries for a given consumer. Can block.",
        ),
    data("xack", -4)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc(
            "stream",
            "5.0.0",
            "Marks a pending message as correctly processed, effectively removing it from the pending entries list of the consumer group. Return value of the command is the number of messages successfully acknowledged, that is, the IDs we were actually able to resolve in the PEL.",
        ),
    data("xpending", -3)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "stream",
            "5.0.0",
            "Return information and entries from a stream consumer group pending entries list, that are messages fetched but never acknowledged.",
        ),
    data("xclaim", -6)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc(
            "stream",
            "5.0.0",
            "Changes (or acquires) ownership of a message in a consumer group, as if the message was delivered to the specified consumer.",
        ),
    data("xautoclaim", -6)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc(
            "stream",
            "6.2.0",
            "Changes (or acquires) ownership of messages in a consumer group, as if the messages were delivered to the specified consumer.",
        ),
    spec("xinfo", -2, container)
        .doc(
            "stream",
            "5.0.0",
            "A container for stream introspection commands",
        )
        .subcommands(XINFO),
    spec("xgroup", -2, container)
        .doc(
            "stream",
            "5.0.0",
            "A container for consumer groups commands",
        )
        .subcommands(XGROUP),
];

/// `XINFO` subcommands.
pub(crate) const XINFO: &[CommandSpec] = &[
    data("xinfo|groups", 3)
        .flags(&["readonly"])
        .keys(2, 2, 1)
        .doc("stream", "5.0.0", "List the consumer groups of a stream"),
    data("xinfo|consumers", 4)
        .flags(&["readonly"])
        .keys(2, 2, 1)
        .doc("stream", "5.0.0", "List the consumers in a consumer group"),
    data("xinfo|stream", -3)
        .flags(&["readonly"])
        .keys(2, 2, 1)
        .doc("stream", "5.0.0", "Get information about a stream"),
    data("xinfo|help", 2).flags(&["loading", "stale"]).doc(
        "stream",
        "5.0.0",
        "Show helpful text about the different subcommands",
    ),
];

/// `XGROUP` subcommands.
pub(crate) const XGROUP: &[CommandSpec] = &[
    data("xgroup|create", -5)
        .flags(&["write", "denyoom"])
        .keys(2, 2, 1)
        .doc("stream", "5.0.0", "Create a consumer group."),
    data("xgroup|setid", -5)
        .flags(&["write"])
        .keys(2, 2, 1)
        .doc(
            "stream",
            "5.0.0",
            "Set a consumer group to an arbitrary last delivered ID value.",
        ),
    data("xgroup|destroy", 4)
        .flags(&["write"])
        .keys(2, 2, 1)
        .doc("stream", "5.0.0", "Destroy a consumer group."),
    data("xgroup|createconsumer", 5)
        .flags(&["write", "denyoom"])
        .keys(2, 2, 1)
        .doc("stream", "6.2.0", "Create a consumer in a consumer group."),
    data("xgroup|delconsumer", 5)
        .flags(&["write"])
        .keys(2, 2, 1)
        .doc(
            "stream",
            "5.0.0",
            "Delete a consumer from a consumer group.",
        ),
    data("xgroup|help", 2).flags(&["loading", "stale"]).doc(
        "stream",
        "5.0.0",
        "Show helpful text about the different subcommands",
    ),
];
