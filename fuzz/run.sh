#!/usr/bin/env bash
# Runs fuzz targets for longer than the short tier in `cargo test`.
#
#   fuzz/run.sh TARGET|all [SECONDS]     (default 60 s per target)
#
# With a nightly toolchain: coverage-guided, cargo-fuzz (libFuzzer), installing cargo-fuzz from
# crates.io if missing. Each target starts from its committed seeds (corpus/TARGET) and regression
# inputs (regressions/TARGET); inputs libFuzzer finds go to work/TARGET (not committed), crashes to
# artifacts/TARGET/. Limits: 10 s per input, 2 GB RSS, no single allocation over 512 MB.
# SANITIZER=address builds with ASan (slower; the project's code has no unsafe, so `none` is the
# default). Without nightly, or with STABLE=1: the stable runner for SECONDS per target.
#
# node's targets (tahoe_cfg, servers_yaml, introducers_yaml, announcement) run only under the stable runner:
#   TESSERA_FUZZ_SECONDS=60 cargo test -p node fuzz::
# Prints per target: runs and seconds.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET|all [SECONDS]}
seconds=${2:-60}

if [ -n "${STABLE:-}" ] || ! cargo +nightly --version >/dev/null 2>&1; then
  echo "stable runner (no nightly toolchain, or STABLE=1): $seconds s per target"
  filter=()
  [ "$target" = all ] || filter=("$target")
  TESSERA_FUZZ_SECONDS=$seconds cargo test -p tests --test fuzz --release "${filter[@]}" -- --nocapture --test-threads=1 |
    grep '^fuzz '
  if [ "$target" = all ]; then
    TESSERA_FUZZ_SECONDS=$seconds cargo test -p node --release fuzz:: -- --nocapture --test-threads=1 | grep '^fuzz '
  fi
  exit 0
fi

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
if [ "$target" = all ]; then
  targets=$(cargo +nightly fuzz list)
else
  targets=$target
fi
sanitizer=${SANITIZER:-none}
cargo +nightly fuzz build --sanitizer "$sanitizer" ${target/#all/}
for t in $targets; do
  mkdir -p "work/$t" "artifacts/$t"
  dirs=("work/$t" "corpus/$t")
  [ -d "regressions/$t" ] && dirs+=("regressions/$t")
  log="artifacts/$t/last-run.log"
  start=$(date +%s)
  status=0
  cargo +nightly fuzz run --sanitizer "$sanitizer" "$t" "${dirs[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo '?')
  echo "fuzz $t: $runs runs in $(( $(date +%s) - start )) s (coverage-guided, $cov edges)$([ $status = 0 ] || echo ", FAILED: see $log and artifacts/$t/")"
done
