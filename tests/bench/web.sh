#!/usr/bin/env bash
# Web gateway benchmark: GET throughput of a 1 GiB file with curl beside `tessera get` of the same
# file in the same run, and the latency of 100 random 64 KiB ranges, on a local devgrid.
# Usage: tests/bench/web.sh [path/to/release/tessera] [size in MiB, default 1024]
set -euo pipefail
cd "$(dirname "$0")/../.."
TESSERA=$(realpath "${1:-target/release/tessera}")
MIB=${2:-1024}
WORK=$(mktemp -d -p "${BENCH_DIR:-.}")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TESSERA" devgrid --servers 10 --web-port "$PORT" --sftp-port 0 --ftp-port 0 --dir "$WORK/grid" > "$WORK/devgrid.log" 2>&1 &
GRID=$!
trap 'kill -INT $GRID 2>/dev/null; wait $GRID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 600); do grep -q "Press Ctrl-C" "$WORK/devgrid.log" && break; sleep 0.1; done
URL="http://127.0.0.1:$PORT"
GW="$WORK/grid/gateway"
head -c $((MIB << 20)) /dev/urandom > "$WORK/input"
CAP=$("$TESSERA" --node-directory "$GW" put "$WORK/input")
rm -f "$WORK/input"
SIZE=$((MIB << 20))
rate() { python3 -c "print(f'{$1 / $2 / 1e6:.0f}')"; }
best_curl=999; best_cli=999
for _ in 1 2 3; do
  t=$(curl -s -o /dev/null -w '%{time_total}' "$URL/uri/$CAP")
  best_curl=$(python3 -c "print(min($best_curl, $t))")
  s=$(date +%s.%N); "$TESSERA" --node-directory "$GW" get "$CAP" /dev/null; e=$(date +%s.%N)
  best_cli=$(python3 -c "print(min($best_cli, $e - $s))")
done
echo "GET $MIB MiB: curl $(rate $SIZE $best_curl) MB/s, tessera get $(rate $SIZE $best_cli) MB/s (best of 3; MB = 10^6 bytes)"
python3 -c "print(f'gateway (curl) vs CLI: {100 * ($best_curl / $best_cli - 1):+.1f}% time')"
python3 - "$URL/uri/$CAP" "$SIZE" <<'PY'
import random, statistics, subprocess, sys
url, size = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(100):
    start = random.randrange(0, size - 65536)
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", "-r",
                          f"{start}-{start + 65535}", url], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "65536", out
    times.append(float(out[0]) * 1000)
print(f"100 random 64 KiB ranges: median {statistics.median(times):.1f} ms, p90 {sorted(times)[89]:.1f} ms (each a fresh curl and a fresh reader)")
PY
