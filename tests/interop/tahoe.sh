#!/usr/bin/env bash
# Interoperability with the real Tahoe-LAFS 1.20 (run by .ci/run; needs python3 and PyPI access).
#
# A. A Tahoe client (`tahoe put`/`get`) uses three Tessera storage nodes over HTTPS, and a Tessera
#    gateway reads what Tahoe uploaded (and Tahoe reads what Tessera uploaded).
# B. A Tessera gateway uses three Tahoe storage nodes (their NURLs computed from node.pem and
#    storage.furl as Tahoe does), uploads and reads back.
#
# Usage: tests/interop/tahoe.sh [path/to/tessera]
set -euo pipefail
cd "$(dirname "$0")/../.."
TESSERA=$(realpath "${1:-target/debug/tessera}")
VENV=${TAHOE_VENV:-${TMPDIR:-/tmp}/tessera-tahoe-venv}
if ! "$VENV/bin/python" -c 'import allmydata' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q tahoe-lafs==1.20.0
fi
TAHOE="$VENV/bin/tahoe"
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
start() { local log=$1; shift; "$@" > "$WORK/$log.log" 2>&1 & pids+=($!); }
connected_tahoe() { curl -s "http://127.0.0.1:$1/?t=json" | python3 -c 'import json,sys; print(sum(s["connection_status"]=="connected" for s in json.load(sys.stdin)["servers"]))' 2>/dev/null || echo 0; }
wait_tahoe_connected() {
  for _ in $(seq 300); do [ "$(connected_tahoe "$1")" = "$2" ] && return 0; sleep 0.2; done
  echo "tahoe client did not connect; its log:" >&2; tail -20 "$WORK/tc.log" >&2; exit 1
}
check_same() { cmp "$1" "$2" && echo "ok: $3"; }

# ---------------------------------------------------------------- A: Tahoe client, Tessera storage
for i in 1 2 3; do
  "$TESSERA" create-node --webport none --nickname "s$i" "s$i" > /dev/null
  start "s$i" "$TESSERA" run "s$i"
done
for i in 1 2 3; do wait_for "s$i/private/storage.nurl"; done
servers_yaml_from_tessera() {
  echo "storage:"
  for i in 1 2 3; do
    key=$(sed 's/^pub-v0-//' "s$i/private/node.pubkey")
    echo "  v0-$key:"
    echo "    ann:"
    echo "      nickname: s$i"
    echo "      anonymous-storage-FURL: $(cat "s$i/private/storage.furl")"
    echo "      anonymous-storage-NURLs: [\"$(head -1 "s$i/private/storage.nurl")\"]"
    echo "      permutation-seed-base32: $key"
  done
}
TC_PORT=$(free_port)
"$TAHOE" create-client --nickname tc --webport "tcp:$TC_PORT:interface=127.0.0.1" \
  --shares-needed 2 --shares-happy 3 --shares-total 3 tc > /dev/null
servers_yaml_from_tessera > tc/private/servers.yaml
start tc "$TAHOE" -d tc run --allow-stdin-close
wait_tahoe_connected "$TC_PORT" 3
head -c 3000000 /dev/urandom > a.bin
CAP_A=$("$TAHOE" -d tc put a.bin 2>/dev/null | tail -1)
case "$CAP_A" in URI:CHK:*) ;; *) echo "tahoe put failed: $CAP_A" >&2; exit 1;; esac
"$TAHOE" -d tc get "$CAP_A" a.tahoe > /dev/null 2>&1
check_same a.bin a.tahoe "Tahoe put/get through Tessera storage servers"

GW_PORT=$(free_port)
"$TESSERA" create-client --webport "tcp:$GW_PORT:interface=127.0.0.1" gw > /dev/null
servers_yaml_from_tessera > gw/private/servers.yaml
sed -i 's/shares.happy = 7/shares.happy = 3/; s/shares.needed = 3/shares.needed = 2/; s/shares.total = 10/shares.total = 3/' gw/tahoe.cfg
start gw "$TESSERA" run gw
wait_for gw/node.url
"$TESSERA" --node-directory gw get "$CAP_A" a.tessera
check_same a.bin a.tessera "Tessera reads a file Tahoe uploaded"
head -c 2000000 /dev/urandom > b.bin
CAP_B=$("$TESSERA" --node-directory gw put b.bin)
"$TAHOE" -d tc get "$CAP_B" b.tahoe > /dev/null 2>&1
check_same b.bin b.tahoe "Tahoe reads a file Tessera uploaded"

# ---------------------------------------------------------------- B: Tessera gateway, Tahoe storage
for i in 1 2 3; do
  port=$(free_port)
  "$TAHOE" create-node --nickname "ts$i" --port "tcp:$port:interface=127.0.0.1" \
    --location "tcp:127.0.0.1:$port" --webport none "ts$i" > /dev/null 2>&1
  start "ts$i" "$TAHOE" -d "ts$i" run --allow-stdin-close
done
for i in 1 2 3; do wait_for "ts$i/private/storage.furl"; done
"$VENV/bin/python" - > gw2-servers.yaml <<'PY'
import base64, hashlib
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
print("storage:")
for i in (1, 2, 3):
    d = f"ts{i}/"
    pem = open(d + "private/node.pem", "rb").read()
    cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE"):])
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    pin = base64.urlsafe_b64encode(hashlib.sha256(spki).digest()).rstrip(b"=").decode()
    furl = open(d + "private/storage.furl").read().strip()
    swissnum = furl.rsplit("/", 1)[1]
    location = furl.split("@tcp:")[1].split("/")[0]
    key = open(d + "node.pubkey").read().strip().replace("pub-v0-", "")
    seed = open(d + "permutation-seed").read().strip()
    print(f"  v0-{key}:\n    ann:\n      nickname: ts{i}\n      anonymous-storage-FURL: {furl}")
    print(f"      anonymous-storage-NURLs: [\"pb://{pin}@{location}/{swissnum}#v=1\"]")
    print(f"      permutation-seed-base32: {seed}")
PY
GW2_PORT=$(free_port)
"$TESSERA" create-client --webport "tcp:$GW2_PORT:interface=127.0.0.1" gw2 > /dev/null
cp gw2-servers.yaml gw2/private/servers.yaml
sed -i 's/shares.happy = 7/shares.happy = 3/; s/shares.needed = 3/shares.needed = 2/; s/shares.total = 10/shares.total = 3/' gw2/tahoe.cfg
start gw2 "$TESSERA" run gw2
wait_for gw2/node.url
for _ in $(seq 100); do
  "$TESSERA" --node-directory gw2 status | grep -q "3 of 3 storage servers connected" && break
  sleep 0.2
done
head -c 2500000 /dev/urandom > c.bin
CAP_C=$("$TESSERA" --node-directory gw2 put c.bin)
"$TESSERA" --node-directory gw2 get "$CAP_C" c.tessera
check_same c.bin c.tessera "Tessera put/get through Tahoe storage servers"
echo "Tahoe-LAFS interop: all checks passed"
