#!/usr/bin/env bash
# Tahoe-LAFS 1.20's own storage client (allmydata.storage.http_client) against a real Tahoe 1.20
# storage node and a Tessera storage node, through every endpoint and error path: each case must give
# the Tahoe client the same outcome from both (tahoe_storage_errors.py lists the cases and the few
# deliberate differences). Run by .ci/run after tahoe.sh (whose virtualenv it reuses or makes).
#
# Usage: tests/interop/tahoe-storage-errors.sh [path/to/tessera]
set -euo pipefail
cd "$(dirname "$0")/../.."
TESSERA=$(realpath "${1:-target/debug/tessera}")
SCRIPT=$(realpath tests/interop/tahoe_storage_errors.py)
VENV=${TAHOE_VENV:-${TMPDIR:-/tmp}/tessera-tahoe-venv}
if ! "$VENV/bin/python" -c 'import allmydata' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q tahoe-lafs==1.20.0
fi
WORK=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 600); do [ -e "$1" ] && return 0; sleep 0.1; done; echo "timed out waiting for $1" >&2; exit 1; }

"$TESSERA" create-node --webport none --nickname tessera tessera > /dev/null
"$TESSERA" run tessera > tessera.log 2>&1 &
pids+=($!)
port=$(free_port)
"$VENV/bin/tahoe" create-node --nickname tahoe --port "tcp:$port:interface=127.0.0.1" \
  --location "tcp:127.0.0.1:$port" --webport none tahoe > /dev/null 2>&1
"$VENV/bin/tahoe" -d tahoe run --allow-stdin-close > tahoe.log 2>&1 &
pids+=($!)
wait_for tessera/private/storage.nurl
wait_for tahoe/private/storage.furl
# Tahoe writes storage.furl before it listens; wait for its port.
for _ in $(seq 300); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
  sleep 0.1
done
"$VENV/bin/python" "$SCRIPT" tahoe "$(head -1 tessera/private/storage.nurl)"
