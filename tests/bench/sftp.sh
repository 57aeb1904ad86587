#!/usr/bin/env bash
# SFTP benchmark: OpenSSH `sftp` put and get of a file (256 MiB by default) through the gateway of a
# local devgrid, beside `tessera put`/`tessera get` of the same file in the same run, with the
# ratios (targets: sftp get >= 70% of the CLI's rate, sftp put >= 50%).
# Usage: tests/bench/sftp.sh [path/to/release/tessera] [size in MiB, default 256] [rounds, default 3]
# Each round stores the file twice on the grid (about 7 times its size with 3-of-10 shares), and
# the storage nodes keep 1 GB of disk free: mind the disk.
set -euo pipefail
cd "$(dirname "$0")/../.."
TESSERA=$(realpath "${1:-target/release/tessera}")
MIB=${2:-256}
ROUNDS=${3:-3}
WORK=$(mktemp -d -p "${BENCH_DIR:-.}")
WORK=$(realpath "$WORK")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$TESSERA" devgrid --servers 10 --web-port "$(free_port)" --sftp-port "$(free_port)" --ftp-port 0 --dir "$WORK/grid" \
  > "$WORK/devgrid.log" 2>&1 &
GRID=$!
trap 'kill -INT $GRID 2>/dev/null; wait $GRID 2>/dev/null; cp "$WORK/grid/gateway/logs/tessera.log" "$WORK.gateway.log" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 600); do grep -qs "Press Ctrl-C" "$WORK/devgrid.log" && break; sleep 0.1; done
GW="$WORK/grid/gateway"
SFTP=$(grep -o 'sftp -P .*' "$WORK/devgrid.log")
SFTP="$SFTP"
head -c $((MIB << 20)) /dev/urandom > "$WORK/input"
: > "$WORK/ssh_config"
SIZE=$((MIB << 20))
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / $2 / 1e6:.0f}')"; }
sftp_run() { # commands on stdin
  ${SFTP/sftp /sftp -F $WORK/ssh_config -o IdentitiesOnly=yes -o IdentityAgent=none ${SFTP_OPTS:-} -b - }
}
best() { python3 -c "print(min($1, $2))"; }
b_cli_put=999; b_cli_get=999; b_sftp_put=999; b_sftp_get=999
for i in $(seq "$ROUNDS"); do
  # Different contents each round, so convergence cannot find the previous upload.
  printf '%08d' "$i" | dd of="$WORK/input" bs=1 seek=0 conv=notrunc status=none
  s=$(now); CAP=$("$TESSERA" --node-directory "$GW" put "$WORK/input"); e=$(now)
  b_cli_put=$(best "$b_cli_put" "$e - $s")
  s=$(now); "$TESSERA" --node-directory "$GW" get "$CAP" "$WORK/cli.out"; e=$(now)
  b_cli_get=$(best "$b_cli_get" "$e - $s")
  printf '%08d' "$((i + 100))" | dd of="$WORK/input" bs=1 seek=0 conv=notrunc status=none
  s=$(now); echo "put $WORK/input file$i" | sftp_run > "$WORK/sftp.log"; e=$(now)
  b_sftp_put=$(best "$b_sftp_put" "$e - $s")
  s=$(now); echo "get file$i $WORK/sftp.out" | sftp_run > "$WORK/sftp.log"; e=$(now)
  b_sftp_get=$(best "$b_sftp_get" "$e - $s")
  cmp -s "$WORK/input" "$WORK/sftp.out" || { echo "sftp get returned different bytes" >&2; exit 1; }
  rm -f "$WORK/cli.out" "$WORK/sftp.out"
done
echo "$MIB MiB, best of $ROUNDS (MB = 10^6 bytes):"
echo "  put: sftp $(rate $SIZE $b_sftp_put) MB/s, tessera put $(rate $SIZE $b_cli_put) MB/s"
echo "  get: sftp $(rate $SIZE $b_sftp_get) MB/s, tessera get $(rate $SIZE $b_cli_get) MB/s"
python3 -c "print(f'  sftp/CLI rate: put {100 * $b_cli_put / $b_sftp_put:.0f}% (target 50%), get {100 * $b_cli_get / $b_sftp_get:.0f}% (target 70%)')"
