#!/usr/bin/env bash
# Regenerate tests/vectors/chk_vectors.json with the real Tahoe-LAFS 1.20.0.
#
#   tests/vectors/generate.sh                      # uses /opt/tahoe-venv
#   TAHOE_VENV=/some/venv tests/vectors/generate.sh
#
# The virtualenv is created if it does not exist, and tahoe-lafs==1.20.0 is
# pip-installed into it if `import allmydata` fails.  An importable Tahoe of
# another version is refused (set TAHOE_ALLOW_OTHER_VERSION=1 to override).
set -euo pipefail

TAHOE_VERSION=1.20.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${TAHOE_VENV:-/opt/tahoe-venv}"
py="$venv/bin/python"

if [ ! -x "$py" ]; then
    echo "creating virtualenv $venv" >&2
    python3 -m venv "$venv"
fi

if ! "$py" -c 'import allmydata' >/dev/null 2>&1; then
    echo "installing tahoe-lafs==$TAHOE_VERSION into $venv" >&2
    "$py" -m pip install --quiet "tahoe-lafs==$TAHOE_VERSION"
fi

have="$("$py" -c 'import allmydata; print(allmydata.__version__)')"
if [ "$have" != "$TAHOE_VERSION" ] && [ -z "${TAHOE_ALLOW_OTHER_VERSION:-}" ]; then
    echo "error: $venv has tahoe-lafs $have, expected $TAHOE_VERSION" >&2
    echo "       (set TAHOE_ALLOW_OTHER_VERSION=1 to generate anyway)" >&2
    exit 1
fi

exec "$py" "$here/generate_chk.py" "$here/chk_vectors.json"
