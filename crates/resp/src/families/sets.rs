//! Sets: the specs of the `set` group's commands (as Redis's `COMMAND INFO` gives them).

use crate::parse::{data, CommandSpec, READ_FAST, WRITE_FAST};

pub(crate) const SETS: &[CommandSpec] = &[
    data("sadd", -3).flags(WRITE_FAST).keys(1, 1, 1).doc(
        "set",
        "1.0.0",
        "Add one or more members to a set",
    ),
    data("srem", -3)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc("set", "1.0.0", "Remove one or more members from a set"),
    data("smembers", 2).flags(&["readonly"]).keys(1, 1, 1).doc(
        "set",
        "1.0.0",
        "Get all the members in a set",
    ),
    data("sismember", 3).flags(READ_FAST).keys(1, 1, 1).doc(
        "set",
        "1.0.0",
        "Determine if a given value is a member of a set",
    ),
    data("smismember", -3).flags(READ_FAST).keys(1, 1, 1).doc(
        "set",
        "6.2.0",
        "Returns the membership associated with the given elements for a set",
    ),
    data("scard", 2).flags(READ_FAST).keys(1, 1, 1).doc(
        "set",
        "1.0.0",
        "Get the number of members in a set",
    ),
    data("spop", -2)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc(
            "set",
            "1.0.0",
            "Remove and return one or multiple random members from a set",
        ),
    data("srandmember", -2)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "set",
            "1.0.0",
            "Get one or multiple random members from a set",
        ),
    data("smove", 4)
        .flags(&["write", "fast"])
        .keys(1, 2, 1)
        .doc("set", "1.0.0", "Move a member from one set to another"),
    data("sinter", -2).flags(&["readonly"]).keys(1, -1, 1).doc(
        "set",
        "1.0.0",
        "Intersect multiple sets",
    ),
    data("sunion", -2)
        .flags(&["readonly"])
        .keys(1, -1, 1)
        .doc("set", "1.0.0", "Add multiple sets"),
    data("sdiff", -2).flags(&["readonly"]).keys(1, -1, 1).doc(
        "set",
        "1.0.0",
        "Subtract multiple sets",
    ),
    data("sinterstore", -3)
        .flags(&["write", "denyoom"])
        .keys(1, -1, 1)
        .doc(
            "set",
            "1.0.0",
            "Intersect multiple sets and store the resulting set in a key",
        ),
    data("sunionstore", -3)
        .flags(&["write", "denyoom"])
        .keys(1, -1, 1)
        .doc(
            "set",
            "1.0.0",
            "Add multiple sets and store the resulting set in a key",
        ),
    data("sdiffstore", -3)
        .flags(&["write", "denyoom"])
        .keys(1, -1, 1)
        .doc(
            "set",
            "1.0.0",
            "Subtract multiple sets and store the resulting set in a key",
        ),
    // Redis 7.0 reports no key range for SINTERCARD (0 0 0, "movablekeys"): its keys follow
    // the count at argument 1.
    data("sintercard", -3)
        .flags(&["readonly", "movablekeys"])
        .numkeys(1)
        .doc(
            "set",
            "7.0.0",
            "Intersect multiple sets and return the cardinality of the result",
        ),
    data("sscan", -3).flags(&["readonly"]).keys(1, 1, 1).doc(
        "set",
        "2.8.0",
        "Incrementally iterate Set elements",
    ),
];
