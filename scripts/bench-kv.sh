#!/usr/bin/env bash
# Comparative key/value benchmark: Flotilla's Redis-protocol router (`flotilla up --single`,
# fsync on), the sharded cluster (`flotilla up --groups G`, G = 1, 2, 3, and the time to move a
# 1 MB shard) against single-node Redis (appendfsync always) and a 3-member etcd, at 1, 16 and
# 64 clients.
#
#   scripts/bench-kv.sh                       # everything, report in target/bench-kv/
#   scripts/bench-kv.sh --systems flotilla,sharded   # Flotilla alone, one group and sharded
#   scripts/bench-kv.sh --requests 5000       # any `flotilla-bench all` flag is passed on
#   OUT=/tmp/kv scripts/bench-kv.sh --systems redis,etcd
#   NO_BUILD=1 scripts/bench-kv.sh            # use the binaries already in target/release
#
# Installs what is missing (Debian packages redis-server, redis-tools, etcd-server and
# protobuf-compiler, which the etcd client needs to build), builds the release binaries, runs
# `flotilla-bench all`, and stops every server it started, whatever happens. Servers listen
# on 127.0.0.1 only and keep their data in a temporary directory removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-target/bench-kv}"

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v etcd >/dev/null || need+=(etcd-server)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v pgrep >/dev/null || need+=(procps)
if ((${#need[@]})); then
    echo "bench-kv: installing ${need[*]}"
    sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

work=""
bench_pid=""
cleanup() {
    # flotilla-bench stops its servers on SIGTERM; wait for it so none outlives this script.
    if [[ -n "$bench_pid" ]] && kill -0 "$bench_pid" 2>/dev/null; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    if [[ -n "$work" ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ "${NO_BUILD:-}" != 1 ]]; then
    echo "bench-kv: building"
    cargo build --release -p flotilla -p flotilla-bench --features flotilla-bench/etcd
fi
work="$(mktemp -d -t flotilla-bench.XXXXXX)"

# The servers' data directories go under $work (flotilla-bench makes its own inside TMPDIR).
TMPDIR="$work" target/release/flotilla-bench all --out "$OUT" "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=""
if ((status == 0)); then
    echo
    echo "bench-kv: report: $OUT/report.md (and $OUT/report.json); chart: $OUT/kv-bench.svg"
fi
exit "$status"
