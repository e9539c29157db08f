//! Sorted sets: the specs of the `sorted-set` group's commands (as Redis's `COMMAND INFO` gives them).

use crate::parse::{data, CommandSpec, READ_FAST, WRITE_FAST};

pub(crate) const ZSETS: &[CommandSpec] = &[
    data("zadd", -4)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "1.2.0",
            "Add one or more members to a sorted set, or update its score if it already exists",
        ),
    data("zincrby", 4)
        .flags(WRITE_FAST)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "1.2.0",
            "Increment the score of a member in a sorted set",
        ),
    data("zscore", 3)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "1.2.0",
            "Get the score associated with the given member in a sorted set",
        ),
    data("zmscore", -3)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "6.2.0",
            "Get the score associated with the given members in a sorted set",
        ),
    data("zcard", 2)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "1.2.0",
            "Get the number of members in a sorted set",
        ),
    data("zcount", 4)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.0.0",
            "Count the members in a sorted set with scores within the given values",
        ),
    data("zlexcount", 4)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.8.9",
            "Count the number of members in a sorted set between a given lexicographical range",
        ),
    data("zrank", 3)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.0.0",
            "Determine the index of a member in a sorted set",
        ),
    data("zrevrank", 3)
        .flags(READ_FAST)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.0.0",
            "Determine the index of a member in a sorted set, with scores ordered from high to low",
        ),
    data("zrem", -3)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "1.2.0",
            "Remove one or more members from a sorted set",
        ),
    data("zrange", -4)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "1.2.0",
            "Return a range of members in a sorted set",
        ),
    data("zrevrange", -4)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "1.2.0",
            "Return a range of members in a sorted set, by index, with scores ordered from high to low",
        ),
    data("zrangebyscore", -4)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "1.0.5",
            "Return a range of members in a sorted set, by score",
        ),
    data("zrevrangebyscore", -4)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.2.0",
            "Return a range of members in a sorted set, by score, with scores ordered from high to low",
        ),
    data("zrangebylex", -4)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.8.9",
            "Return a range of members in a sorted set, by lexicographical range",
        ),
    data("zrevrangebylex", -4)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.8.9",
            "Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings.",
        ),
    data("zrangestore", -5)
        .flags(&["write", "denyoom"])
        .keys(1, 2, 1)
        .doc(
            "sorted-set",
            "6.2.0",
            "Store a range of members from sorted set into another key",
        ),
    data("zremrangebyrank", 4)
        .flags(&["write"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.0.0",
            "Remove all members in a sorted set within the given indexes",
        ),
    data("zremrangebyscore", 4)
        .flags(&["write"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "1.2.0",
            "Remove all members in a sorted set within the given scores",
        ),
    data("zremrangebylex", 4)
        .flags(&["write"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.8.9",
            "Remove all members in a sorted set between the given lexicographical range",
        ),
    data("zpopmin", -2)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "5.0.0",
            "Remove and return members with the lowest scores in a sorted set",
        ),
    data("zpopmax", -2)
        .flags(&["write", "fast"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "5.0.0",
            "Remove and return members with the highest scores in a sorted set",
        ),
    data("zmpop", -4)
        .flags(&["write", "movablekeys"])
        .numkeys(1)
        .doc(
            "sorted-set",
            "7.0.0",
            "Remove and return members with scores in a sorted set",
        ),
    data("zrandmember", -2)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "6.2.0",
            "Get one or multiple random elements from a sorted set",
        ),
    data("zscan", -3)
        .flags(&["readonly"])
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.8.0",
            "Incrementally iterate sorted sets elements and associated scores",
        ),
    data("zunionstore", -4)
        .flags(&["write", "denyoom", "movablekeys"])
        .keys(1, 1, 1)
        .numkeys(2)
        .doc(
            "sorted-set",
            "2.0.0",
            "Add multiple sorted sets and store the resulting sorted set in a new key",
        ),
    data("zinterstore", -4)
        .flags(&["write", "denyoom", "movablekeys"])
        .keys(1, 1, 1)
        .numkeys(2)
        .doc(
            "sorted-set",
            "2.0.0",
            "Intersect multiple sorted sets and store the resulting sorted set in a new key",
        ),
    data("zdiffstore", -4)
        .flags(&["write", "denyoom", "movablekeys"])
        .keys(1, 1, 1)
        .numkeys(2)
        .doc(
            "sorted-set",
            "6.2.0",
            "Subtract multiple sorted sets and store the resulting sorted set in a new key",
        ),
    data("zunion", -3)
        .flags(&["readonly", "movablekeys"])
        .numkeys(1)
        .doc(
            "sorted-set",
            "6.2.0",
            "Add multiple sorted sets",
        ),
    data("zinter", -3)
        .flags(&["readonly", "movablekeys"])
        .numkeys(1)
        .doc(
            "sorted-set",
            "6.2.0",
            "Intersect multiple sorted sets",
        ),
    data("zdiff", -3)
        .flags(&["readonly", "movablekeys"])
        .numkeys(1)
        .doc(
            "sorted-set",
            "6.2.0",
            "Subtract multiple sorted sets",
        ),
    data("zintercard", -3)
        .flags(&["readonly", "movablekeys"])
        .numkeys(1)
        .doc(
            "sorted-set",
            "7.0.0",
            "Intersect multiple sorted sets and return the cardinality of the result",
        ),
    data("bzpopmin", -3)
        .flags(&["write", "noscript", "blocking", "fast"])
        .keys(1, -2, 1)
        .doc(
            "sorted-set",
            "5.0.0",
            "Remove and return the member with the lowest score from one or more sorted sets, or block until one is available",
        ),
    data("bzpopmax", -3)
        .flags(&["write", "noscript", "blocking", "fast"])
        .keys(1, -2, 1)
        .doc(
            "sorted-set",
            "5.0.0",
            "Remove and return the member with the highest score from one or more sorted sets, or block until one is available",
        ),
    data("bzmpop", -5)
        .flags(&["write", "blocking", "movablekeys"])
        .numkeys(2)
        .doc(
            "sorted-set",
            "7.0.0",
            "Remove and return members with scores in a sorted set or block until one is available",
        ),
];
