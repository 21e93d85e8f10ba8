#!/usr/bin/env bash
# Installs the Debian packages the platform and its tests need, when they are missing:
#   redis-server                          coordination (the AppHost starts it; the tests too)
#   python3-grpcio python3-grpc-tools     Google's gRPC implementation, the interop reference in the tests
#   chromium                              the headless browser the dashboard tests drive
# Usage: scripts/install-deps.sh [runtime|test]   (default: test, which includes runtime)
set -euo pipefail
what=${1:-test}
packages=(redis-server)
if [ "$what" = test ]; then
  packages+=(python3-grpcio python3-grpc-tools chromium)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "Missing packages: ${missing[*]}. Install them with: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing ${missing[*]}..."
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
