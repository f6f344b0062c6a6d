#!/usr/bin/env bash
# Runs the whole Hyperverse test suite on a fresh machine.
#
# Installs what the tests need when it is missing (redis-server, through apt-get), then
# runs `cargo test --workspace`. Tests that need Redis start their own redis-server
# processes on free loopback ports; they fail loudly if it cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    echo "test.sh: installing redis-server (needed by the registry tests)" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq redis-server >/dev/null
    # The package starts a system instance; the tests start their own, so stop it.
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
redis-server --version

cargo test --workspace "$@"
