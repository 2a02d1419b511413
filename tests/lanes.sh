#!/usr/bin/env bash
# `make test` in lanes: each group of modules after a `--` runs in a pytest process of its own beside the
# first, which runs everything else. They bring up environments of their own (a whole demo, the README's
# commands, restarts of local components, streaming jobs under faults) and spend much of their time waiting
# on them — scale-down windows, restarts, recoveries — so their waits overlap the other lanes' work; they share
# no session fixture with the first lane, so nothing starts twice. The other lanes' output follows the first's;
# the exit status is the first failure's.
#
#   tests/lanes.sh PYTEST [PYTEST_ARGS…] -- MODULE… [-- MODULE…]…
set -uo pipefail
pytest=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do pytest+=("$1"); shift; done
[ $# -gt 1 ] || { echo "tests/lanes.sh: no module for a second lane after --" >&2; exit 2; }
lanes=()   # each lane's modules, space-separated
ignored=()
while [ $# -gt 0 ]; do
  shift  # the --
  group=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do group+=("$1"); ignored+=(--ignore "$1"); shift; done
  [ ${#group[@]} -gt 0 ] || { echo "tests/lanes.sh: an empty lane" >&2; exit 2; }
  lanes+=("${group[*]}")
done
pids=()
logs=()
bases=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "${logs[@]}" "${bases[@]}"' EXIT
for lane in "${lanes[@]}"; do
  log=$(mktemp -t tidescale-lane.XXXXXX)
  base=$(mktemp -d -t tidescale-lane-tmp.XXXXXX)
  # shellcheck disable=SC2086  # a lane's modules are word-split on purpose
  "${pytest[@]}" --basetemp "$base" $lane >"$log" 2>&1 &
  pids+=($!)
  logs+=("$log")
  bases+=("$base")
done
start=$SECONDS
"${pytest[@]}" "${ignored[@]}"
rc=$?
echo "==== first lane: $((SECONDS - start)) s ===="
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"
  lane_rc=$?
  echo "==== lane $((i + 2)) (done by $((SECONDS - start)) s): ${lanes[$i]} ===="
  cat "${logs[$i]}"
  if [ "$rc" -eq 0 ]; then rc=$lane_rc; fi
done
exit "$rc"
