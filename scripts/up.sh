#!/usr/bin/env bash
# Builds everything and brings TuningPlatform up under its AppHost (redis-server and every service), then runs the
# quickstart demo (TuningPlatform.AppHost/Quickstart/README.md) and leaves everything running.
# Extra arguments go to the AppHost: --data-dir DIR, --any-port, --smoke, --no-quickstart, --quickstart-size small.
# TUNING_QUICKSTART=0 skips the demo too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh runtime
dotnet build TuningPlatform.sln -c Release -nologo -clp:ErrorsOnly
exec dotnet TuningPlatform.AppHost/bin/Release/net10.0/TuningPlatform.AppHost.dll --quickstart "$@"
