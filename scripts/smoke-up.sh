#!/usr/bin/env bash
# The README's first command, run literally from the checkout it is given (CI runs it in its
# fresh clone): `cargo run --release -- up` must start a cluster that answers SET and GET on
# 127.0.0.1:6380 through redis-cli, and Ctrl-C must stop it leaving no process behind.
# The cluster's data goes to ./flotilla-data, removed before and after.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-cli >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null
fi

log=$(mktemp)
rm -rf flotilla-data
# A session of its own, as a terminal's foreground job is: Ctrl-C is a SIGINT to its group.
setsid cargo run --release -- up >"$log" 2>&1 &
leader=$!
pgid=$leader

fail() {
    echo "smoke: $*" >&2
    echo "--- output of cargo run --release -- up:" >&2
    cat "$log" >&2
    # Only what this run started (its session), not other clusters on a shared machine.
    pkill -KILL -s "$pgid" 2>/dev/null || true
    exit 1
}

# Building may take minutes on a cold cache; the cluster itself starts in seconds.
deadline=$((SECONDS + 900))
until [ "$(redis-cli -p 6380 ping 2>/dev/null)" = PONG ]; do
    kill -0 "$leader" 2>/dev/null || fail "exited before answering PING"
    [ $SECONDS -lt $deadline ] || fail "no PONG on 6380 within 900 s"
    sleep 1
done

value="smoke-$RANDOM-$$"
# A just-started cluster may still be electing or joining its groups: retry a few seconds.
for _ in $(seq 1 30); do
    out=$(redis-cli -p 6380 set greeting "$value" 2>&1) || true
    [ "$out" = OK ] && break
    sleep 0.5
done
[ "$out" = OK ] || fail "SET answered '$out'"
got=$(redis-cli -p 6380 get greeting)
[ "$got" = "$value" ] || fail "GET answered '$got', expected '$value'"
echo "smoke: SET and GET through the router on 6380 answered"

kill -INT -- "-$pgid"
for _ in $(seq 1 60); do
    kill -0 "$leader" 2>/dev/null || break
    sleep 0.5
done
kill -0 "$leader" 2>/dev/null && fail "still running 30 s after Ctrl-C"
# What `up` started stays in this run's session (setsid above): anything still in it leaked.
# Zombies are not counted: exited children wait there for init to reap them.
left=$(ps -o pid=,stat=,args= -s "$pgid" | awk '$2 !~ /^Z/') || true
if [ -n "$left" ]; then
    fail "processes left after Ctrl-C: $left"
fi
echo "smoke: Ctrl-C stopped every process"
rm -rf flotilla-data "$log"
