#!/usr/bin/env bash
# `make test` in two lanes: the modules named after `--` run in a second pytest process beside the first,
# which runs everything else. They bring up environments of their own (a whole demo, the README's commands,
# restarts of local components) and spend most of their time waiting on them — scale-down windows, restarts —
# so their waits overlap the first lane's work; they share no session fixture with it, so nothing starts
# twice. The second lane's output follows the first's; the exit status is the first failure's.
#
#   tests/lanes.sh PYTEST [PYTEST_ARGS…] -- MODULE…
set -uo pipefail
pytest=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do pytest+=("$1"); shift; done
shift
[ $# -gt 0 ] || { echo "tests/lanes.sh: no module for the second lane after --" >&2; exit 2; }
log=$(mktemp -t tidescale-lane2.XXXXXX)
base=$(mktemp -d -t tidescale-lane2-tmp.XXXXXX)
"${pytest[@]}" --basetemp "$base" "$@" >"$log" 2>&1 &
second=$!
trap 'kill "$second" 2>/dev/null; rm -rf "$log" "$base"' EXIT
ignored=()
for module in "$@"; do ignored+=(--ignore "$module"); done
"${pytest[@]}" "${ignored[@]}"
first_rc=$?
wait "$second"
second_rc=$?
echo "==== second lane: $* ===="
cat "$log"
if [ "$first_rc" -ne 0 ]; then exit "$first_rc"; fi
exit "$second_rc"
