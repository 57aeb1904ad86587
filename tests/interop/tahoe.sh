#!/usr/bin/env bash
# Interoperability with the real Tahoe-LAFS 1.20 (run by .ci/run; needs python3 and PyPI access).
#
# A. A Tahoe client (`tahoe put`/`get`) uses three Tessera storage nodes over HTTPS, and a Tessera
#    gateway reads what Tahoe uploaded (and Tahoe reads what Tessera uploaded).
# B. A Tessera gateway uses three Tahoe storage nodes (their NURLs computed from node.pem and
#    storage.furl as Tahoe does), uploads and reads back, and repairs around a corrupt share
#    (Tahoe servers cannot remove it: the good copy goes to another server).
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
fail() { echo "FAIL: $*" >&2; exit 1; }

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

# Check and repair: both gateways judge the same file alike (our JSON has every key Tahoe's has);
# a share Tahoe placed on a Tessera server is lost, Tessera's repair writes it back, and Tahoe's
# own verifier finds the file healthy again.
json_keys() { python3 -c 'import json,sys; print(" ".join(sorted(json.load(sys.stdin)["results"])))'; }
TC_URL="http://127.0.0.1:$TC_PORT"
GW_URL=$(sed "s:/*$::" gw/node.url)
tahoe_keys=$(curl -sf -X POST "$TC_URL/uri/$CAP_A?t=check&output=JSON" | json_keys)
ours=$(curl -sf -X POST "$GW_URL/uri/$CAP_A?t=check&output=JSON")
for key in $tahoe_keys; do
  echo "$ours" | json_keys | tr ' ' '\n' | grep -qx "$key" || fail "our check JSON lacks Tahoe's key $key"
done
echo "$ours" | python3 -c 'import json,sys; r=json.load(sys.stdin)["results"]; assert r["healthy"] and r["count-shares-good"]==3, r' \
  && echo "ok: Tessera's check of a Tahoe upload has Tahoe's JSON keys and says healthy"
SI_A=$("$TESSERA" debug dump-cap "$CAP_A" | sed -n 's/^storage index: //p')
lost=$(ls -d s*/storage/shares/*/"$SI_A"/* | head -1)
rm "$lost"
curl -sf -X POST "$GW_URL/uri/$CAP_A?t=check&repair=true&output=JSON" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["repair-attempted"] and r["repair-successful"], r; assert r["pre-repair-results"]["results"]["count-shares-good"]==2, r' \
  || fail "Tessera did not repair the Tahoe upload"
"$TAHOE" -d tc check --verify "$CAP_A" > check.out 2>&1 || true
grep -q "Healthy" check.out || { cat check.out >&2; fail "Tahoe's verifier does not find the repaired file healthy"; }
echo "ok: Tessera repairs a Tahoe upload and Tahoe's verifier finds it healthy"

# Mutable files, both formats: each side creates, reads and replaces what the other wrote.
GW_URL=$(sed "s:/*$::" gw/node.url)
for fmt in SDMF MDMF; do
  head -c 300000 /dev/urandom > "m1-$fmt"
  CAP_M=$("$TAHOE" -d tc put --format="$fmt" "m1-$fmt" 2>/dev/null | tail -1)
  case "$CAP_M" in URI:SSK:*|URI:MDMF:*) ;; *) echo "tahoe put --format=$fmt failed: $CAP_M" >&2; exit 1;; esac
  "$TESSERA" --node-directory gw get "$CAP_M" "m1-$fmt.tessera"
  check_same "m1-$fmt" "m1-$fmt.tessera" "Tessera reads a $fmt file Tahoe made"
  head -c 200000 /dev/urandom > "m2-$fmt"
  "$TESSERA" --node-directory gw put "m2-$fmt" "$CAP_M" > /dev/null
  "$TAHOE" -d tc get "$CAP_M" "m2-$fmt.tahoe" > /dev/null 2>&1
  check_same "m2-$fmt" "m2-$fmt.tahoe" "Tahoe reads the $fmt file after Tessera replaced it"
  head -c 150000 /dev/urandom > "m3-$fmt"
  "$TAHOE" -d tc put "m3-$fmt" "$CAP_M" > /dev/null 2>&1
  "$TESSERA" --node-directory gw get "$CAP_M" "m3-$fmt.tessera"
  check_same "m3-$fmt" "m3-$fmt.tessera" "Tessera reads the $fmt file after Tahoe replaced it"
  CAP_N=$("$TESSERA" --node-directory gw put --format="$fmt" "m1-$fmt")
  "$TAHOE" -d tc get "$CAP_N" "n-$fmt.tahoe" > /dev/null 2>&1
  check_same "m1-$fmt" "n-$fmt.tahoe" "Tahoe reads a $fmt file Tessera made"
  : > empty
  CAP_E=$("$TAHOE" -d tc put --format="$fmt" empty 2>/dev/null | tail -1)
  "$TESSERA" --node-directory gw get "$CAP_E" "e-$fmt.tessera"
  check_same empty "e-$fmt.tessera" "Tessera reads an empty $fmt file Tahoe made"
  CAP_E=$("$TESSERA" --node-directory gw put --format="$fmt" empty)
  "$TAHOE" -d tc get "$CAP_E" "e-$fmt.tahoe" > /dev/null 2>&1
  check_same empty "e-$fmt.tahoe" "Tahoe reads an empty $fmt file Tessera made"
done
# An MDMF partial update by Tessera (only the touched segments re-encoded), read by Tahoe.
head -c 5000 /dev/urandom > patch.bin
curl -sf -X PUT --data-binary @patch.bin "$GW_URL/uri/$CAP_N?offset=131000" > /dev/null
python3 - "m1-MDMF" patch.bin 131000 > m1-patched <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read()); patch = open(sys.argv[2], "rb").read(); at = int(sys.argv[3])
data[at:at + len(patch)] = patch
sys.stdout.buffer.write(data)
PY
"$TAHOE" -d tc get "$CAP_N" m1-patched.tahoe > /dev/null 2>&1
check_same m1-patched m1-patched.tahoe "Tahoe reads an MDMF file after a Tessera partial update"

# Directories: each side lists and adds to what the other made.
for fmt in SDMF MDMF; do
  DIR_T=$("$TAHOE" -d tc mkdir --format="$fmt" 2>/dev/null | tail -1)
  "$TAHOE" -d tc put a.bin "$DIR_T/from-tahoe.bin" > /dev/null 2>&1
  "$TESSERA" --node-directory gw put b.bin "$DIR_T/from-tessera.bin" > /dev/null
  [ "$("$TAHOE" -d tc ls "$DIR_T" 2>/dev/null | tr '\n' ' ')" = "from-tahoe.bin from-tessera.bin " ] \
    || fail "tahoe ls of a $fmt directory both wrote"
  "$TAHOE" -d tc get "$DIR_T/from-tessera.bin" d1.tahoe > /dev/null 2>&1
  check_same b.bin d1.tahoe "Tahoe reads a child Tessera linked into a $fmt directory Tahoe made"
  "$TESSERA" --node-directory gw get "$DIR_T/from-tahoe.bin" d2.tessera
  check_same a.bin d2.tessera "Tessera reads a child Tahoe linked into a $fmt directory"
  DIR_S=$("$TESSERA" --node-directory gw mkdir --format="$fmt")
  "$TESSERA" --node-directory gw mkdir "$DIR_S/sub" > /dev/null
  "$TAHOE" -d tc put a.bin "$DIR_S/sub/t.bin" > /dev/null 2>&1
  "$TAHOE" -d tc mv "$DIR_S/sub/t.bin" "$DIR_S/moved.bin" > /dev/null 2>&1
  [ "$("$TESSERA" --node-directory gw ls "$DIR_S" | tr '\n' ' ')" = "moved.bin sub " ] \
    || fail "tessera ls of a $fmt directory Tahoe changed"
  "$TESSERA" --node-directory gw get "$DIR_S/moved.bin" d3.tessera
  check_same a.bin d3.tessera "Tessera reads what Tahoe moved in a $fmt directory Tessera made"
done

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
# A small file goes whole to Tessera's servers; Tahoe's are sent allocate and write (in steps),
# and sent again, each finds its share held and compares it.
head -c 5000 /dev/urandom > small.bin
CAP_S=$("$TESSERA" --node-directory gw2 put small.bin)
[ "$("$TESSERA" --node-directory gw2 put small.bin)" = "$CAP_S" ] || fail "the same small file gave another cap"
"$TESSERA" --node-directory gw2 get "$CAP_S" small.tessera
check_same small.bin small.tessera "Tessera puts a small file on Tahoe storage servers, twice"

# A corrupt share on a Tahoe storage server: Tessera's verify names it; Tahoe has no request to
# remove it (404), so the repair puts a good copy on another server and the file is healthy; a
# second repair has nothing to do.
SI_C=$("$TESSERA" debug dump-cap "$CAP_C" | sed -n 's/^storage index: //p')
bad=$(ls -d ts*/storage/shares/*/"$SI_C"/* | head -1)
python3 - "$bad" <<'PY'
import sys
path = sys.argv[1]; data = bytearray(open(path, "rb").read()); data[len(data) // 2] ^= 0x5A
open(path, "wb").write(data)
PY
GW2_URL=$(sed "s:/*$::" gw2/node.url)
curl -sf -X POST "$GW2_URL/uri/$CAP_C?t=check&verify=true&output=JSON" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin)["results"]; assert r["count-corrupt-shares"]==1 and not r["healthy"] and r["count-shares-good"]==2, r' \
  || fail "Tessera's verify does not name the corrupt share on a Tahoe server"
curl -sf -X POST "$GW2_URL/uri/$CAP_C?t=check&verify=true&repair=true&output=JSON" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["repair-attempted"] and r["repair-successful"], r; p=r["post-repair-results"]["results"]; assert p["healthy"] and p["count-shares-good"]==3, r' \
  || fail "Tessera did not repair around a corrupt share on a Tahoe server"
curl -sf -X POST "$GW2_URL/uri/$CAP_C?t=check&verify=true&repair=true&output=JSON" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); assert not r["repair-attempted"], r' \
  || fail "a second repair did something"
"$TESSERA" --node-directory gw2 get "$CAP_C" c2.tessera
check_same c.bin c2.tessera "Tessera repairs around a corrupt share on a Tahoe server (good copy placed elsewhere)"
echo "Tahoe-LAFS interop: all checks passed"
