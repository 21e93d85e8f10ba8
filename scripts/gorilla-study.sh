#!/usr/bin/env bash
# Reproduces the Gorilla Torch Hub study (README: "The Gorilla study"): builds, starts the platform under its AppHost
# with its own data folder, runs studies/TuningPlatform.Studies.Gorilla against it, and stops the platform.
# Arguments go to the study (e.g. --ft-epochs 12 --raft-epochs 12 --eval-limit 40 --out FILE). Needs ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${GORILLA_STUDY_DATA:-$(mktemp -d -t gorilla-study.XXXXXX)}"
scripts/install-deps.sh runtime
dotnet build TuningPlatform.sln -c Release -nologo -clp:ErrorsOnly
# The base: stories260K from ../shared with its context raised from 512 to 1024 positions (stories260K-1k: the same
# weights, config.json's max_position_embeddings = 1024; RoPE has no learned positions, so positions past 512 are
# simply ones pre-training never saw). Three API documents, a question and an answer need about 800 of its tokens.
base="$PWD/../shared/assets/models/stories260K-hf"
[ -f "$base/config.json" ] || { echo "stories260K-hf not found at $base (the study needs ../shared)" >&2; exit 2; }
mkdir -p "$data/models/stories260K-1k"
for f in "$base"/*; do
  [ "$(basename "$f")" = config.json ] || ln -sf "$f" "$data/models/stories260K-1k/"
done
sed 's/"max_position_embeddings": *512/"max_position_embeddings": 1024/' "$base/config.json" >"$data/models/stories260K-1k/config.json"
grep -q '"max_position_embeddings": 1024' "$data/models/stories260K-1k/config.json" || { echo "could not raise the context in $base/config.json" >&2; exit 2; }
# Leases of two minutes: on a machine shared with other heavy work a training worker's heartbeat can be late by more
# than the default 15 s, and its job would be handed to the other worker (LeaseLost) again and again.
export Coordination__LeaseSeconds="${Coordination__LeaseSeconds:-120}"
dotnet TuningPlatform.AppHost/bin/Release/net10.0/TuningPlatform.AppHost.dll --data-dir "$data" >"$data/apphost.log" 2>&1 &
apphost=$!
trap 'kill -TERM "$apphost" 2>/dev/null; wait "$apphost" 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  grep -q "TuningPlatform is up" "$data/apphost.log" && break
  kill -0 "$apphost" 2>/dev/null || { cat "$data/apphost.log"; echo "the AppHost stopped before it was up" >&2; exit 1; }
  sleep 1
done
grep -q "TuningPlatform is up" "$data/apphost.log" || { tail -50 "$data/apphost.log"; echo "the AppHost was not up in 240 s" >&2; exit 1; }
dotnet studies/TuningPlatform.Studies.Gorilla/bin/Release/net10.0/TuningPlatform.Studies.Gorilla.dll "$@"
