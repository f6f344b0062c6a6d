#!/usr/bin/env bash
# Runs the whole Hyperverse test suite on a fresh machine.
#
# Installs what the tests need when it is missing (Debian packages through apt-get, and
# kubernetes-validate from PyPI in a virtualenv), then
# runs `cargo test --workspace`. Tests that need Redis start their own redis-server
# processes on free loopback ports; they fail loudly if it cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need from Debian: redis-server (the registry tests start their own
# servers), promtool (from the prometheus package; checks /metrics output), tcpdump
# (the transport test captures loopback traffic and searches it for secrets), a
# wasm32 Rust compiler (below), systemd-analyze and PyYAML (the observability test
# verifies the systemd units and reads the compose file and Kubernetes manifests).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
/usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || missing+=(python3-yaml)
# Rust guests (drivers/guests/rust/) are built from source by `hv build` in the tests:
# Debian's rustc 1.63 with the wasm32 standard library and the wasm linker. It goes to
# /usr/bin, behind rustup's toolchain on the path, which cargo keeps using.
[ -x /usr/bin/rustc ] || missing+=(rustc)
[ -d /usr/lib/rustlib/wasm32-unknown-unknown/lib ] || missing+=(libstd-rust-dev-wasm32)
command -v wasm-ld >/dev/null 2>&1 || missing+=(lld)
# The Kubernetes manifests are checked against the API's schemas by kubernetes-validate
# (PyPI), in a virtualenv of its own (Debian's python3-venv makes it).
/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The packages may start system services; the tests need none of them.
    $SUDO systemctl disable --now redis-server prometheus >/dev/null 2>&1 || true
    pkill -x redis-server >/dev/null 2>&1 || true
    pkill -f '^/usr/bin/prometheus' >/dev/null 2>&1 || true
fi
redis-server --version
promtool --version 2>&1 | sed -n 1p
tcpdump --version 2>&1 | sed -n 1p
/usr/bin/rustc --version
venv="${XDG_CACHE_HOME:-$HOME/.cache}/hyperverse/test-venv"
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -qx '1.37.0'; then
    echo "test.sh: installing kubernetes-validate 1.37.0 in $venv" >&2
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0'
fi
export HV_KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"
echo "kubernetes-validate $("$HV_KUBERNETES_VALIDATE" --version)"

# A one-off build gains nothing from incremental compilation and its caches double the
# disk a fresh build takes; a developer who iterates can set CARGO_INCREMENTAL=1.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace "$@"
