#!/usr/bin/env bash
# FTP benchmark: curl FTP put and get of one file (default 256 MiB), plain and over TLS (AUTH TLS,
# protected data channel), beside `tessera put` and `tessera get` of the same file in the same run,
# on a local devgrid. Targets: FTP get >= 70% of the CLI's rate, FTP put >= 60%.
# Usage: tests/bench/ftp.sh [path/to/release/tessera] [size in MiB, default 256]
set -euo pipefail
cd "$(dirname "$0")/../.."
TESSERA=$(realpath "${1:-target/release/tessera}")
MIB=${2:-256}
WORK=$(mktemp -d -p "${BENCH_DIR:-.}")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WEB=$(free_port)
FTP=$(free_port)
"$TESSERA" devgrid --servers 10 --web-port "$WEB" --ftp-port "$FTP" --sftp-port 0 --dir "$WORK/grid" > "$WORK/devgrid.log" 2>&1 &
GRID=$!
trap 'kill -INT $GRID 2>/dev/null; wait $GRID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 600); do grep -q "Press Ctrl-C" "$WORK/devgrid.log" && break; sleep 0.1; done
GW="$WORK/grid/gateway"
USER="demo:$(cat "$GW/private/demo_ftp_password")"
URL="ftp://127.0.0.1:$FTP"
head -c $((MIB << 20)) /dev/urandom > "$WORK/input"
SIZE=$((MIB << 20))
rate() { python3 -c "print(f'{$SIZE / $1 / 1e6:.0f}')"; }
best() { python3 -c "print(min($1, $2))"; }
now() { date +%s.%N; }
elapsed() { python3 -c "print($2 - $1)"; }

# Each upload is of fresh data (convergent encryption would otherwise find the shares already
# there): one byte of the input changes per run, for the CLI and for FTP alike.
bump() { printf "\\x$(printf %02x "$1")" | dd of="$WORK/input" bs=1 seek=0 conv=notrunc status=none; }

put_cli=999; put_ftp=999; put_ftps=999; get_cli=999; get_ftp=999; get_ftps=999; get_ftps_setup=999; get_ftps_data=999
run=0
for _ in 1 2 3; do
  run=$((run + 1)); bump $((run * 3))
  s=$(now); CAP=$("$TESSERA" --node-directory "$GW" put "$WORK/input"); e=$(now)
  put_cli=$(best "$put_cli" "$(elapsed "$s" "$e")")
  bump $((run * 3 + 1))
  t=$(curl -sS -u "$USER" -T "$WORK/input" -w '%{time_total}' "$URL/plain.bin")
  put_ftp=$(best "$put_ftp" "$t")
  bump $((run * 3 + 2))
  t=$(curl -sS --ssl-reqd -k -u "$USER" -T "$WORK/input" -w '%{time_total}' "$URL/tls.bin")
  put_ftps=$(best "$put_ftps" "$t")

  s=$(now); "$TESSERA" --node-directory "$GW" get "$CAP" /dev/null >/dev/null 2>&1; e=$(now)
  get_cli=$(best "$get_cli" "$(elapsed "$s" "$e")")
  t=$(curl -sS -u "$USER" -o /dev/null -w '%{time_total}' "$URL/plain.bin")
  get_ftp=$(best "$get_ftp" "$t")
  read -r t pre < <(curl -sS --ssl-reqd -k -u "$USER" -o /dev/null -w '%{time_total} %{time_pretransfer}\n' "$URL/tls.bin")
  get_ftps=$(best "$get_ftps" "$t")
  get_ftps_setup=$(best "$get_ftps_setup" "$pre")
  get_ftps_data=$(best "$get_ftps_data" "$(elapsed "$pre" "$t")")
done
# The last FTP upload must read back byte for byte.
curl -sS -u "$USER" -o "$WORK/output" "$URL/tls.bin"
cmp "$WORK/input" "$WORK/output"

echo "$MIB MiB, 10 storage nodes on this machine, best of 3 (MB = 10^6 bytes):"
echo "  put: tessera put $(rate "$put_cli") MB/s, FTP $(rate "$put_ftp") MB/s, FTPS $(rate "$put_ftps") MB/s"
echo "  get: tessera get $(rate "$get_cli") MB/s, FTP $(rate "$get_ftp") MB/s, FTPS $(rate "$get_ftps") MB/s"
# curl 7.88 with PROT P waits only on the data connection until its TLS handshake completes, and
# libunftp answers that handshake only once RETR arrives: curl notices the replies to TYPE and SIZE
# on its timers (0.2 s or more). Shown apart, so that the server's own rate is visible too.
echo "  (FTPS get: $(python3 -c "print(f'{$get_ftps_setup:.2f}')") s of curl's setup before the first byte; \
$(rate "$get_ftps_data") MB/s after it)"
python3 - "$put_cli" "$put_ftp" "$put_ftps" "$get_cli" "$get_ftp" "$get_ftps" <<'PY'
import sys
put_cli, put_ftp, put_ftps, get_cli, get_ftp, get_ftps = map(float, sys.argv[1:])
for name, cli, ftp, target in [("put", put_cli, put_ftp, 60), ("put TLS", put_cli, put_ftps, 60),
                               ("get", get_cli, get_ftp, 70), ("get TLS", get_cli, get_ftps, 70)]:
    share = 100 * cli / ftp
    print(f"  FTP {name}: {share:.0f}% of the CLI's rate (target >= {target}%){'' if share >= target else '  BELOW TARGET'}")
PY
