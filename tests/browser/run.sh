#!/usr/bin/env bash
# Runs tests/browser/ui.mjs against a real devgrid gateway (run by .ci/run).
# Usage: tests/browser/run.sh [path/to/tessera]
set -euo pipefail
ROOT=$(realpath "$(dirname "$0")/../..")
TESSERA=$(realpath "${1:-$ROOT/target/debug/tessera}")
cd "$(dirname "$0")"
[ -d node_modules/playwright-core ] || npm install --no-audit --no-fund --silent
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TESSERA" devgrid --servers 5 --web-port "$PORT" --sftp-port 0 --ftp-port 0 --dir "$WORK/grid" > "$WORK/devgrid.log" 2>&1 &
GRID=$!
trap 'kill -INT $GRID 2>/dev/null; wait $GRID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 600); do grep -q "Press Ctrl-C" "$WORK/devgrid.log" && break; sleep 0.1; done
grep -q "Press Ctrl-C" "$WORK/devgrid.log" || { cat "$WORK/devgrid.log"; exit 1; }
OUT=${TESSERA_BROWSER_OUT:-$WORK}
mkdir -p "$OUT"
node ui.mjs "http://127.0.0.1:$PORT" "$OUT" "$(cat "$WORK/grid/introducer/node.url" 2>/dev/null || true)"
