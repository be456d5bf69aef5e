#!/usr/bin/env bash
# Reruns every command whose printed output or figures the README and
# benchmarks/REPRODUCTION.md show, and copies the figures into place.
# Run it whenever the engine's arithmetic changes, on an otherwise idle
# machine (wall times are reported too), then paste the tables from
# $OUT/*.log into the two documents and revise their readings.
#
#   bash benchmarks/regenerate.sh            # about 30 min on a 2-core CPU
#   OUT=runs/regen bash benchmarks/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/regenerate-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
echo "machine: $(uname -m), $(nproc) cores; $(python -c 'import jax; print("jax", jax.__version__)')" | tee "$OUT/machine.txt"

run() {  # run NAME COMMAND...: the command's output and its wall time in $OUT/NAME.log
  local name=$1; shift
  echo "== $*" | tee "$OUT/$name.log"
  local start=$SECONDS
  "$@" 2>&1 | tee -a "$OUT/$name.log"
  echo "wall time: $((SECONDS - start)) s" | tee -a "$OUT/$name.log"
}

# README: the main job with its defaults (compile cache off: a first run).
run sweep flood-jax sweep --no-progress --no-compile-cache --out "$OUT/sweep"
cp "$OUT/sweep/overview.png" docs/sweep_mnist1d.png

# benchmarks/REPRODUCTION.md
run synthetic flood-jax reproduce synthetic --no-progress --no-compile-cache \
  --out "$OUT/reproduce-synthetic"
run mnist1d flood-jax reproduce mnist1d --no-progress --no-compile-cache \
  --out "$OUT/reproduce-mnist1d"
run digits flood-jax reproduce digits --seeds 10 --no-progress --no-compile-cache \
  --out "$OUT/reproduce-digits"
cp "$OUT/reproduce-synthetic/figures/synthetic_accuracy_vs_level.png" benchmarks/figures/
cp "$OUT/reproduce-synthetic/figures/curves_sinusoid_noise0.1_adam.png" \
  benchmarks/figures/synthetic_curves_sinusoid_noise0.1_adam.png
cp "$OUT/reproduce-mnist1d/figures/curves_mnist1d_noise0_adam.png" \
  benchmarks/figures/mnist1d_curves_adam.png
run adaflood flood-jax reproduce adaflood --no-progress --no-compile-cache \
  --out "$OUT/reproduce-adaflood"
run pbt flood-jax reproduce pbt --no-progress --no-compile-cache \
  --out "$OUT/reproduce-pbt"
run pbt-mnist1d flood-jax reproduce pbt --dataset mnist1d --levels 0:1:6 --hidden 128 \
  --depth 2 --no-progress --no-compile-cache --out "$OUT/reproduce-pbt-mnist1d"
echo "done: $OUT"
