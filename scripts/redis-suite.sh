#!/usr/bin/env bash
# Runs Redis's own test suite (its Tcl harness, unchanged) against a running server — Flotilla's
# router by default, 127.0.0.1:6380 — one unit file at a time, and prints how many tests each file
# passed and failed. Issue 18 measures Flotilla by this: the tests it passes against the tests
# Redis itself passes in the same harness (run this script against a real redis-server for that
# denominator, and give its summary to --baseline).
#
# The suite is not part of this repository (its licence differs from ours): it is read from an
# export of the redis/redis repository kept elsewhere, given by --suite or REDIS_SUITE_DIR.
#
# Usage: scripts/redis-suite.sh [--host H] [--port P] [--suite DIR] [--out DIR] [--timeout SECS]
#            [--baseline FILE] [--list-failures] [UNIT...] [-- HARNESS-ARGS...]
#   UNIT            a unit of the suite, as the harness names it (unit/type/string); default: the
#                   units issue 18 counts (see DEFAULT_UNITS below)
#   --out DIR       raw harness output, one <unit>.log per unit, and summary.tsv (default
#                   /tmp/redis-suite-out)
#   --timeout SECS  per unit: a unit still running after this is killed (with its test clients) and
#                   counted as it stands, marked "timeout" (default 300). A server that never answers
#                   a command blocks the harness's client forever; this bounds it.
#   --baseline FILE a summary.tsv of an earlier run (Redis's own): adds its [ok] count and the share
#                   of it this run passed
#   --list-failures after the table, each failing test per unit with the first line of its error
#   -- ARGS         passed to the harness after ours (e.g. --only 'SETNX*', --verbose)
# Exit status: 0 when every unit ran to its end with no failure, 1 otherwise, 2 on a usage error.
set -euo pipefail

DEFAULT_UNITS=(unit/type/string unit/type/incr unit/keyspace unit/expire unit/protocol unit/multi
    unit/scan unit/info-command unit/quit unit/other unit/type/hash)
# The tag the figures in issue 18 were measured with: Debian 12's redis-server is 7.0.15, so the
# baseline server and the harness are the same release.
SUITE_TAG=7.0.15

host=127.0.0.1
port=6380
suite=${REDIS_SUITE_DIR:-}
out=/tmp/redis-suite-out
timeout_s=300
baseline=
list_failures=0
units=()
extra=()

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-2}"
}

need_arg() { [ $# -ge 2 ] || { echo "redis-suite: $1 needs a value" >&2; exit 2; }; }

while [ $# -gt 0 ]; do
    case $1 in
        --host) need_arg "$@"; host=$2; shift 2 ;;
        --port) need_arg "$@"; port=$2; shift 2 ;;
        --suite) need_arg "$@"; suite=$2; shift 2 ;;
        --out) need_arg "$@"; out=$2; shift 2 ;;
        --timeout) need_arg "$@"; timeout_s=$2; shift 2 ;;
        --baseline) need_arg "$@"; baseline=$2; shift 2 ;;
        --list-failures) list_failures=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) echo "redis-suite: unknown option $1" >&2; usage 2 ;;
        *) units+=("$1"); shift ;;
    esac
done
[ ${#units[@]} -gt 0 ] || units=("${DEFAULT_UNITS[@]}")
case $timeout_s in ''|*[!0-9]*) echo "redis-suite: --timeout wants whole seconds" >&2; exit 2 ;; esac

# The export may be given as its root or as its tests/ folder.
if [ -n "$suite" ] && [ ! -f "$suite/tests/test_helper.tcl" ] && [ -f "$suite/test_helper.tcl" ]; then
    suite=$(dirname "$suite")
fi
if [ -z "$suite" ] || [ ! -f "$suite/tests/test_helper.tcl" ]; then
    cat >&2 <<EOF
redis-suite: no Redis test suite found${suite:+ at $suite} (give --suite DIR or REDIS_SUITE_DIR).
Get one OUTSIDE this repository (Redis's licence is not ours; never copy it in here), e.g.:
    git clone --depth 1 --branch $SUITE_TAG https://github.com/redis/redis /tmp/redis-$SUITE_TAG
    REDIS_SUITE_DIR=/tmp/redis-$SUITE_TAG $0
or from a clone you have: git -C <clone> archive $SUITE_TAG tests utils | tar -x -C <dir>
Use the tag of the redis-server you compare against (redis-server --version; Debian 12: $SUITE_TAG).
EOF
    exit 2
fi
command -v tclsh >/dev/null || { echo "redis-suite: tclsh not found (apt-get install -y tcl)" >&2; exit 2; }
command -v timeout >/dev/null || { echo "redis-suite: timeout (coreutils) not found" >&2; exit 2; }
suite=$(cd "$suite" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Summarises one unit's log: prints "ok err exc skip ignore status" on the first line, then one
# line per failure: "<test name>\t<first line of its error>".
# The harness's reports, one a line (colour codes stripped):
#   [ok]: NAME (N ms)        passed
#   [err]: NAME in FILE      failed; the next line is the assertion or error. An error that is not
#                            an assertion comes with the first 10 characters cut (the harness
#                            strips an "assertion:" prefix either way), then its full errorInfo:
#                            the line after is then the whole message, taken instead.
#   [err]: MESSAGE           (no "in FILE") an error outside any test under --durable: the rest of
#                            that server block was not run
#   [exception]: MESSAGE     the unit stopped there (e.g. the FLUSHALL every block starts with)
#   [skip]: / [ignore]: NAME not run (--only/--skiptest; a tag such as external:skip)
#   [1/1 done]: UNIT         the unit ran to its end
summarize() {
    awk '
        { gsub(/\033\[[0-9;]*m/, "") }
        function flush_err() {
            if (pending == "") return
            msg = l1
            if (l2 != "" && length(l2) > length(l1) && substr(l2, length(l2) - length(l1) + 1) == l1) msg = l2
            fails[++nf] = pending "\t" msg
            pending = ""
        }
        # A report line ends the failure before it: an assertion has one message line only.
        { report = ($0 ~ /^\[(ok|err|exception|skip|ignore|[0-9]+\/[0-9]+ [a-z]+)\]: /) }
        pending != "" && !report && grab == 1 { l1 = $0; grab = 2; next }
        pending != "" && !report && grab == 2 { l2 = $0; grab = 0; flush_err(); next }
        /^\[ok\]: /        { flush_err(); ok++; next }
        /^\[skip\]: /      { flush_err(); skip++; next }
        /^\[ignore\]: /    { flush_err(); ign++; next }
        /^\[exception\]: / {
            flush_err(); exc++
            m = substr($0, 14)
            fails[++nf] = "(unit aborted)\t" (m != "" ? m : "exception")
            aborted = 1; next
        }
        /^\[err\]: / {
            flush_err(); err++
            name = substr($0, 8)
            if (name ~ / in tests\/.*\.tcl$/) sub(/ in tests\/.*\.tcl$/, "", name)
            else { l1 = name; name = "(outside a test: rest of its server block skipped)" }
            pending = name; l1 = ""; l2 = ""; grab = (name ~ /^\(outside/) ? 2 : 1
            next
        }
        /^\[[0-9]+\/[0-9]+ done\]: / { done = 1; next }
        END {
            flush_err()
            status = done ? "done" : (aborted ? "aborted" : "incomplete")
            printf "%d %d %d %d %d %s\n", ok, err, exc, skip, ign, status
            for (i = 1; i <= nf; i++) print fails[i]
        }
    ' "$1"
}

summary=$out/summary.tsv
failures=$out/failures.txt
printf 'unit\tok\terr\texception\tskip\tignore\tstatus\tseconds\n' >"$summary"
: >"$failures"
any_bad=0

for unit in "${units[@]}"; do
    unit=${unit%.tcl}
    unit=${unit#tests/}
    if [ ! -f "$suite/tests/$unit.tcl" ]; then
        echo "redis-suite: no $suite/tests/$unit.tcl" >&2
        exit 2
    fi
    log=$out/$(printf '%s' "$unit" | tr / _).log
    start=$SECONDS
    rc=0
    # TERM=dumb: the harness colours its reports when TERM is an xterm. `timeout` (not in
    # --foreground mode) signals its whole process group, the harness's test clients included.
    # --clients 1: one unit needs one test client; the default starts 16 tclsh that would idle.
    (cd "$suite" && TERM=dumb timeout --kill-after=10 "$timeout_s" \
        tclsh tests/test_helper.tcl --host "$host" --port "$port" \
        --singledb --ignore-encoding --durable --clients 1 --single "$unit" ${extra[@]+"${extra[@]}"}) \
        >"$log" 2>&1 </dev/null || rc=$?
    secs=$((SECONDS - start))
    {
        read -r ok err exc skip ign status
        [ "$rc" = 124 ] || [ "$rc" = 137 ] && status=timeout
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$unit" "$ok" "$err" "$exc" "$skip" "$ign" "$status" "$secs" >>"$summary"
        while IFS= read -r line; do printf '%s\t%s\n' "$unit" "$line"; done >>"$failures"
        if [ "$status" = timeout ]; then
            printf '%s\t(unit timed out)\tkilled after %s s; the tests after the last report did not run\n' \
                "$unit" "$timeout_s" >>"$failures"
        fi
    } < <(summarize "$log")
    echo "redis-suite: $unit finished ($secs s)" >&2
done

# The table. With a baseline, "of" is the baseline's [ok] for the unit and "%" this run's share.
awk -F'\t' -v base="$baseline" '
    BEGIN {
        if (base != "") while ((getline line < base) > 0) {
            split(line, f, "\t"); if (f[1] != "unit") bok[f[1]] = f[2]
        }
    }
    NR == 1 { next }
    {
        u[++n] = $1; ok[n] = $2; er[n] = $3; ex[n] = $4; sk[n] = $5; ig[n] = $6; st[n] = $7; s[n] = $8
        tok += $2; ter += $3; tex += $4; tsk += $5; tig += $6; ts += $8
    }
    END {
        hdr = sprintf("%-20s %5s %5s %5s %5s %6s", "unit", "ok", "err", "exc", "skip", "ignore")
        if (base != "") hdr = hdr sprintf(" %5s %6s", "of", "%")
        print hdr sprintf("  %-10s %5s", "status", "secs")
        for (i = 1; i <= n; i++) {
            line = sprintf("%-20s %5d %5d %5d %5d %6d", u[i], ok[i], er[i], ex[i], sk[i], ig[i])
            if (base != "") {
                b = bok[u[i]]
                if (b != "") { tb += b; line = line sprintf(" %5d %6s", b, b > 0 ? sprintf("%.1f", 100 * ok[i] / b) : "-") }
                else line = line sprintf(" %5s %6s", "?", "-")
            }
            print line sprintf("  %-10s %5d", st[i], s[i])
        }
        line = sprintf("%-20s %5d %5d %5d %5d %6d", "total", tok, ter, tex, tsk, tig)
        if (base != "") line = line sprintf(" %5d %6s", tb, tb > 0 ? sprintf("%.1f", 100 * tok / tb) : "-")
        print line sprintf("  %-10s %5d", "", ts)
    }
' "$summary"

if [ "$list_failures" = 1 ] && [ -s "$failures" ]; then
    awk -F'\t' '
        $1 != cur { cur = $1; print ""; print cur ":" }
        { printf "  %s\n      %s\n", $2, $3 }
    ' "$failures"
fi
echo "redis-suite: logs, summary.tsv and failures.txt in $out" >&2

awk -F'\t' 'NR > 1 && ($3 > 0 || $4 > 0 || $7 != "done") { bad = 1 } END { exit bad }' "$summary" || any_bad=1
exit "$any_bad"
