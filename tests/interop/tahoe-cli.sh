#!/usr/bin/env bash
# The real Tahoe-LAFS 1.20 CLI (`tahoe create-alias`, `put`, `get`, `ls`, `mkdir`, `mv`, `ln`,
# `cp -r`, `unlink`, `check`, `deep-check`, `manifest`) against a node directory (node.url +
# private/aliases), checking every result byte for byte; then `tessera`'s CLI and `tahoe`'s share
# that node directory's aliases both ways, and `tessera check`/`deep-check`/`manifest` print what
# `tahoe`'s do.
#
# Usage: tests/interop/tahoe-cli.sh tahoe [path/to/tessera]   a one-node Tahoe grid as the gateway
#        tests/interop/tahoe-cli.sh path/to/tessera           a `tessera devgrid` gateway
# (Tahoe comes from $TAHOE_VENV, installed from PyPI there when missing, as tests/interop/tahoe.sh.)
set -euo pipefail
cd "$(dirname "$0")/../.."
KIND=${1:?usage: $0 tahoe [path/to/tessera] | $0 path/to/tessera}
if [ "$KIND" = tahoe ]; then
  TESSERA=${2:-target/debug/tessera}
else
  TESSERA=$KIND
  KIND=tessera
fi
[ -x "$TESSERA" ] && TESSERA=$(realpath "$TESSERA") || TESSERA=
[ "$KIND" = tessera ] && [ -z "$TESSERA" ] && { echo "no tessera binary at $1" >&2; exit 1; }
VENV=${TAHOE_VENV:-${TMPDIR:-/tmp}/tessera-tahoe-venv}
if ! "$VENV/bin/python" -c 'import allmydata' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q tahoe-lafs==1.20.0
fi
TAHOE="$VENV/bin/tahoe"
export LC_ALL=C.UTF-8 LANG=C.UTF-8
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
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
same_file() { cmp -s "$1" "$2" || fail "$3: $1 and $2 differ"; ok "$3"; }
same_text() { [ "$1" = "$2" ] || fail "$3: expected [$2], got [$1]"; ok "$3"; }

# ------------------------------------------------------------------------------------ the gateway
if [ "$KIND" = tahoe ]; then
  # One Tahoe node that is its own storage server: 1-of-1 encoding, servers.yaml naming itself
  # (written after a first start has made the storage FURL and keys).
  TUB=$(free_port); WEB=$(free_port)
  "$TAHOE" create-node --nickname gw --port "tcp:$TUB:interface=127.0.0.1" --location "tcp:127.0.0.1:$TUB" \
    --webport "tcp:$WEB:interface=127.0.0.1" --shares-needed 1 --shares-happy 1 --shares-total 1 gw > /dev/null
  "$TAHOE" -d gw run --allow-stdin-close > first.log 2>&1 &
  first=$!
  wait_for gw/private/storage.furl; wait_for gw/permutation-seed; wait_for gw/node.url
  kill -TERM "$first"; wait "$first" || true
  rm gw/node.url
  cat > gw/private/servers.yaml <<EOF
storage:
  v0-$(sed 's/^pub-v0-//' gw/node.pubkey):
    ann:
      nickname: gw
      anonymous-storage-FURL: $(cat gw/private/storage.furl)
      permutation-seed-base32: $(cat gw/permutation-seed)
EOF
  "$TAHOE" -d gw run --allow-stdin-close > gw.log 2>&1 &
  pids+=($!)
  wait_for gw/node.url
  for _ in $(seq 300); do
    curl -s "http://127.0.0.1:$WEB/?t=json" | grep -q '"connection_status": "Connected' && break
    sleep 0.2
  done
  NODE=$WORK/gw
else
  PORT=$(free_port)
  "$TESSERA" devgrid --servers 3 --web-port "$PORT" --sftp-port 0 --ftp-port 0 --dir grid > devgrid.log 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do grep -q "Press Ctrl-C" devgrid.log && break; sleep 0.1; done
  grep -q "Press Ctrl-C" devgrid.log || { cat devgrid.log; fail "tessera devgrid did not start"; }
  NODE=$WORK/grid/gateway
fi
T() { "$TAHOE" -d "$NODE" "$@"; }
echo "gateway: $KIND at $(cat "$NODE/node.url")"

# ------------------------------------------------------------------------------------ tahoe's CLI
same_text "$(T create-alias tahoe)" "Alias 'tahoe' created" "tahoe create-alias"
T create-alias tahoe > /dev/null 2>&1 && fail "a second create-alias tahoe succeeded"
ok "tahoe create-alias refuses a duplicate"
grep -q '^tahoe: URI:DIR2' "$NODE/private/aliases" || fail "private/aliases: $(cat "$NODE/private/aliases")"

head -c 1500000 /dev/urandom > a.bin
printf 'small\n' > small.txt
CAP=$(T put a.bin 2>/dev/null)
case "$CAP" in URI:CHK:*) ;; *) fail "tahoe put printed [$CAP]";; esac
T get "$CAP" a.unlinked 2>/dev/null
same_file a.bin a.unlinked "tahoe put/get unlinked"
T put a.bin tahoe:a.bin > /dev/null 2>&1
T get tahoe:a.bin a.linked
same_file a.bin a.linked "tahoe put/get tahoe:a.bin"
T get tahoe:a.bin > a.stdout
same_file a.bin a.stdout "tahoe get to stdout"
T put small.txt small.txt > /dev/null 2>&1
same_text "$(T get small.txt)" "small" "tahoe put/get with the default alias"

DIRCAP=$(T mkdir tahoe:dir/sub)
case "$DIRCAP" in URI:DIR2:*) ;; *) fail "tahoe mkdir printed [$DIRCAP]";; esac
same_text "$(T ls)" $'a.bin\ndir\nsmall.txt' "tahoe ls"
same_text "$(T ls tahoe:dir)" "sub" "tahoe ls of a subdirectory"
# (Output captured first: `grep -q` leaving early would break tahoe's pipe, and pipefail with it.)
LISTING=$(T ls -l tahoe:)
grep -Eq '^-r-- 1500000 .* a\.bin$' <<< "$LISTING" || fail "tahoe ls -l: $LISTING"
ok "tahoe ls -l"
same_text "$(T ls --uri tahoe:dir | awk '{print $2}')" "$DIRCAP" "tahoe ls --uri"

same_text "$(T mv tahoe:a.bin tahoe:dir/)" "OK" "tahoe mv into a directory"
same_text "$(T ls tahoe:dir)" $'a.bin\nsub' "the moved file is listed"
T get tahoe:dir/a.bin a.moved
same_file a.bin a.moved "the moved file reads back"
same_text "$(T mv tahoe:dir/a.bin tahoe:renamed.bin)" "OK" "tahoe mv (rename)"
same_text "$(T ln tahoe:renamed.bin tahoe:dir/sub/)" "OK" "tahoe ln"
T get tahoe:dir/sub/renamed.bin a.linked2
same_file a.bin a.linked2 "the linked file reads back"

mkdir -p tree/empty "tree/sübdir/déeper"
printf 'top\n' > tree/top.txt
head -c 300000 /dev/urandom > "tree/sübdir/big.bin"
printf 'snow\n' > "tree/sübdir/déeper/naïve file ☃.txt"
: > "tree/sübdir/déeper/empty-file"
T cp -r tree tahoe: > /dev/null
same_text "$(T ls tahoe:tree)" $'empty\nsübdir\ntop.txt' "tahoe cp -r (local to grid)"
same_text "$(T ls tahoe:tree/empty)" "" "the empty directory was copied"
T cp -r tahoe:tree back > /dev/null
diff -r tree back/tree > /dev/null || fail "tahoe cp -r round trip: $(diff -r tree back/tree)"
ok "tahoe cp -r round trip (nested, empty directory, non-ASCII names)"

same_text "$(T unlink tahoe:renamed.bin)" "200 OK" "tahoe unlink"
same_text "$(T ls)" $'dir\nsmall.txt\ntree' "the unlinked name is gone"
T get tahoe:dir/sub/renamed.bin a.still
same_file a.bin a.still "the other link still reads"

# ------------------------------------------------------------- tahoe check, deep-check, manifest
# The tree now: 7 directories (tahoe:, dir, dir/sub, tree, tree/empty, tree/sübdir,
# tree/sübdir/déeper) and 6 files, 4 of them LIT (small.txt, top.txt, naïve file ☃.txt, empty-file).
json_get() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1:]: v=v[k]
print(json.dumps(v) if not isinstance(v,str) else v)' "$@"; }
RAW=$(T check --raw tahoe:dir/sub/renamed.bin)
SI=$(json_get storage-index <<< "$RAW")
[ ${#SI} = 26 ] || fail "tahoe check --raw: storage index [$SI] in $RAW"
[ "$(json_get results healthy <<< "$RAW")" = true ] || fail "tahoe check --raw: not healthy: $RAW"
GOOD=$(json_get results count-shares-good <<< "$RAW")
K=$(json_get results count-shares-needed <<< "$RAW")
N=$(json_get results count-shares-expected <<< "$RAW")
[ "$GOOD" = "$N" ] || fail "tahoe check --raw: $GOOD of $N shares: $RAW"
for key in count-happiness count-good-share-hosts count-corrupt-shares list-corrupt-shares \
           servers-responding sharemap count-wrong-shares count-recoverable-versions \
           count-unrecoverable-versions recoverable; do
  json_get results "$key" <<< "$RAW" > /dev/null 2>&1 || fail "tahoe check --raw: no results.$key in $RAW"
done
ok "tahoe check --raw (storage index $SI, $GOOD shares, $K-of-$N)"
SUMMARY=$(json_get summary <<< "$RAW")
case "$SUMMARY" in Healthy*) ;; *) fail "summary [$SUMMARY]";; esac
same_text "$(T check tahoe:dir/sub/renamed.bin)" "Summary: $SUMMARY
 storage index: $SI
 good-shares: $N (encoding is $K-of-$N)
 wrong-shares: 0" "tahoe check"
same_text "$(T check --verify tahoe:dir/sub/renamed.bin)" "$(T check tahoe:dir/sub/renamed.bin)" "tahoe check --verify"
same_text "$(T check --add-lease tahoe:dir/sub/renamed.bin)" "$(T check tahoe:dir/sub/renamed.bin)" "tahoe check --add-lease"
same_text "$(T check tahoe:small.txt)" "Summary: Healthy (LIT)
 storage index: " "tahoe check of a LIT file"
same_text "$(T check --raw tahoe:small.txt | json_get results healthy)" "true" "tahoe check --raw of a LIT file"
ROOTCHECK=$(T check)
grep -q '^Summary: Healthy' <<< "$ROOTCHECK" || fail "tahoe check (tahoe:): $ROOTCHECK"
ok "tahoe check of a directory"
T check tahoe:missing > /dev/null 2>&1 && fail "tahoe check of a missing name succeeded"
ok "tahoe check of a missing name fails"

same_text "$(T deep-check tahoe:)" "done: 13 objects checked, 13 healthy, 0 unhealthy" "tahoe deep-check"
same_text "$(T deep-check --verify tahoe:tree)" "done: 8 objects checked, 8 healthy, 0 unhealthy" "tahoe deep-check --verify of a subtree"
same_text "$(T deep-check --add-lease tahoe:)" "done: 13 objects checked, 13 healthy, 0 unhealthy" "tahoe deep-check --add-lease"
DEEP=$(T deep-check -v tahoe:)
[ "$(wc -l <<< "$DEEP")" = 14 ] || fail "tahoe deep-check -v: $DEEP"
for line in "'<root>': Healthy" "'dir/sub/renamed.bin': Healthy" "'tree/sübdir/déeper': Healthy" \
            "'tree/sübdir/déeper/naïve file ☃.txt': Healthy (LIT)" "'small.txt': Healthy (LIT)"; do
  grep -qF "$line" <<< "$DEEP" || fail "tahoe deep-check -v: no [$line] in $DEEP"
done
ok "tahoe deep-check -v (one line per object, Tahoe's quoting)"
T deep-check --raw tahoe: | python3 -c '
import json, sys
lines = [json.loads(l) for l in sys.stdin]
objects = [l for l in lines if l["type"] in ("file", "directory")]
assert len(objects) == 13, objects
assert all(o["check-results"]["results"]["healthy"] for o in objects), objects
assert lines[-1]["type"] == "stats", lines[-1]
assert lines[-1]["stats"]["count-directories"] == 7 and lines[-1]["stats"]["count-files"] == 6, lines[-1]
' || fail "tahoe deep-check --raw"
ok "tahoe deep-check --raw (13 objects and a stats line)"

ROOTCAP=$(sed -n 's/^tahoe: //p' "$NODE/private/aliases")
MANIFEST=$(T manifest tahoe:)
[ "$(wc -l <<< "$MANIFEST")" = 13 ] || fail "tahoe manifest: $MANIFEST"
grep -qxF "$ROOTCAP " <<< "$MANIFEST" || fail "tahoe manifest: no root line in $MANIFEST"
same_text "$(cut -d' ' -f2- <<< "$MANIFEST" | sort)" "$(printf '%s\n' '' dir dir/sub dir/sub/renamed.bin small.txt tree \
  tree/empty tree/sübdir tree/sübdir/big.bin tree/sübdir/déeper 'tree/sübdir/déeper/empty-file' \
  'tree/sübdir/déeper/naïve file ☃.txt' tree/top.txt | sort)" "tahoe manifest (cap and path of every object)"
grep -qxF "$(T ls --uri tahoe:tree/sübdir | awk '$1 == "big.bin" {print $2}') tree/sübdir/big.bin" <<< "$MANIFEST" \
  || fail "tahoe manifest: big.bin's cap"
ok "tahoe manifest names big.bin by the cap ls shows"
same_text "$(T manifest --storage-index tahoe: | grep -cE '^[a-z2-7]{26}$')" 9 "tahoe manifest --storage-index (9 objects are not LIT)"
same_text "$(T manifest --verify-cap tahoe: | grep -c Verifier)" 9 "tahoe manifest --verify-cap"
REPAIRCAPS=$(T manifest --repair-cap tahoe:)
[ -n "$REPAIRCAPS" ] && ! grep -qv '^URI:' <<< "$REPAIRCAPS" || fail "tahoe manifest --repair-cap: $REPAIRCAPS"
ok "tahoe manifest --repair-cap prints caps"
T manifest --raw tahoe: | python3 -c '
import json, sys
lines = [json.loads(l) for l in sys.stdin]
assert len(lines) == 14 and lines[-1]["type"] == "stats", lines
' || fail "tahoe manifest --raw"
ok "tahoe manifest --raw"

# ------------------------------------------------------------------------- tessera's CLI, same aliases
if [ -n "$TESSERA" ]; then
  X() { "$TESSERA" --node-directory "$NODE" "$@"; }
  same_text "$(X ls tahoe:tree)" "$(T ls tahoe:tree)" "tessera ls reads the alias tahoe wrote"
  same_text "$(X ls -l tahoe:tree/sübdir)" "$(T ls -l tahoe:tree/sübdir)" "tessera ls -l prints what tahoe ls -l prints"
  same_text "$(X list-aliases)" "$(T list-aliases)" "tessera list-aliases prints what tahoe prints"
  same_text "$(X create-alias made-by-tessera)" "Alias 'made-by-tessera' created" "tessera create-alias"
  X put a.bin made-by-tessera:from-tessera.bin 2> /dev/null > /dev/null
  T get made-by-tessera:from-tessera.bin a.cross
  same_file a.bin a.cross "tahoe reads through the alias tessera wrote"
  X cp -r tree made-by-tessera: > /dev/null
  T cp -r made-by-tessera:tree back2 > /dev/null
  diff -r tree back2/tree > /dev/null || fail "tessera cp -r, then tahoe cp -r back: $(diff -r tree back2/tree)"
  ok "tessera cp -r, tahoe cp -r back"
  same_text "$(X check tahoe:dir/sub/renamed.bin)" "$(T check tahoe:dir/sub/renamed.bin)" "tessera check prints what tahoe check prints"
  same_text "$(X check tahoe:small.txt tahoe:)" "$(T check tahoe:small.txt tahoe:)" "tessera check of a LIT file and a directory"
  same_text "$(X check --raw tahoe:dir/sub/renamed.bin)" "$(T check --raw tahoe:dir/sub/renamed.bin)" "tessera check --raw"
  same_text "$(X deep-check tahoe:)" "$(T deep-check tahoe:)" "tessera deep-check prints what tahoe deep-check prints"
  same_text "$(X deep-check -v tahoe: | sort)" "$(T deep-check -v tahoe: | sort)" "tessera deep-check -v"
  same_text "$(X manifest tahoe: | sort)" "$(T manifest tahoe: | sort)" "tessera manifest prints what tahoe manifest prints"
  for flag in --storage-index --verify-cap --repair-cap; do
    same_text "$(X manifest $flag tahoe: | sort)" "$(T manifest $flag tahoe: | sort)" "tessera manifest $flag"
  done
  # check-and-repair: compared with tahoe's output while the gateway answers repair=true;
  # otherwise its refusal is one line.
  if T check --repair tahoe:dir/sub/renamed.bin > repair.txt 2> /dev/null; then
    same_text "$(X check --repair tahoe:dir/sub/renamed.bin)" "$(cat repair.txt)" "tessera check --repair"
    same_text "$(X deep-check --repair -v tahoe: | sort)" "$(T deep-check --repair -v tahoe: | sort)" "tessera deep-check --repair -v"
  else
    X check --repair tahoe:dir/sub/renamed.bin > /dev/null 2> err.txt && fail "tessera check --repair succeeded where tahoe's failed"
    [ "$(wc -l < err.txt)" = 1 ] || fail "tessera check --repair error: $(cat err.txt)"
    ok "tessera check --repair: the gateway's refusal in one line ($(cat err.txt))"
  fi
  X check tahoe:missing > /dev/null 2> err.txt && fail "tessera check of a missing name succeeded"
  [ "$(wc -l < err.txt)" = 1 ] && grep -q "No such child" err.txt || fail "tessera check error: $(cat err.txt)"
  ok "tessera check of a missing name: one line"
  [ "$(stat -c %a "$NODE/private/aliases")" = 600 ] || fail "private/aliases mode $(stat -c %a "$NODE/private/aliases")"
  ok "private/aliases is 0600 after tessera wrote it"
fi
echo "Tahoe CLI interop ($KIND gateway): all checks passed"
