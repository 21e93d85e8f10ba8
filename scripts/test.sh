#!/usr/bin/env bash
# Runs every test tier (unit, functional over real sockets, interop with grpcio, end to end through the
# AppHost), then prints one line "N passed, N failed, N skipped" and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test || exit 1
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

dotnet build TuningPlatform.sln -c Release -nologo -clp:ErrorsOnly || { echo "0 passed, 1 failed"; exit 1; }
# One test assembly at a time: the end-to-end and fault tests start many processes and must not starve each other.
dotnet test TuningPlatform.sln -c Release --no-build -nologo -m:1 --logger "trx" --logger "console;verbosity=minimal" --results-directory "$results"
status=$?

read -r passed failed skipped < <(cat "$results"/*.trx 2>/dev/null | grep -o '<Counters [^>]*>' | awk '
  { for (i = 1; i <= NF; i++) { split($i, kv, "=\""); gsub(/"/, "", kv[2]); v[kv[1]] += kv[2] } }
  END { printf "%d %d %d\n", v["passed"], v["failed"], v["total"] - v["executed"] }')
if [ "${passed:-0}" -eq 0 ] && [ "$status" -eq 0 ]; then
  echo "no test results were found"; status=1
fi
if [ "$status" -ne 0 ] && [ "${failed:-0}" -eq 0 ]; then
  failed=1
fi
echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
[ "$status" -eq 0 ] && [ "${failed:-0}" -eq 0 ]
