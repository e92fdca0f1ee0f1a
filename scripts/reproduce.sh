#!/usr/bin/env bash
# Every paper figure from one command: run every experiment preset at SCALE, compute the loss
# surfaces, draw every figure and write the report.
#
#   scripts/reproduce.sh smoke|cpu|paper [local|slurm]
#
# Without a launcher, Hydra's basic launcher runs the jobs of each sweep one after another in
# this process tree (best on a laptop); `local` runs them as parallel submitit processes,
# `slurm` submits job arrays (site settings in conf/local/default.yaml). Results go to
# multirun/reproduce-SCALE/<preset>/<job>/, figures to .../figures, the page to .../report.
# Re-running the script resumes: finished runs are kept, interrupted ones continue from their
# checkpoints. Choose presets with PRESETS="fig1 fig4" scripts/reproduce.sh cpu.
set -euo pipefail

SCALE=${1:-}
LAUNCHER=${2:-}
case "$SCALE" in
  smoke|cpu|paper) ;;
  *) echo "usage: scripts/reproduce.sh smoke|cpu|paper [local|slurm] (got scale '${SCALE}')" >&2; exit 2 ;;
esac
case "$LAUNCHER" in
  ""|local|slurm) ;;
  *) echo "scripts/reproduce.sh: unknown launcher '$LAUNCHER'; choose one of: local, slurm" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
OUT=${OUT:-multirun/reproduce-$SCALE}
PRESETS=${PRESETS:-"fig1 fig2 fig3 fig3_dln fig4 fig10 lp lp_dln hessian surfaces"}
case "$SCALE" in
  smoke) SURFACE_POINTS=5 ;;
  cpu) SURFACE_POINTS=11 ;;
  paper) SURFACE_POINTS=51 ;;
esac
mkdir -p "$OUT"
TIMINGS="$OUT/timings.tsv"
[ -f "$TIMINGS" ] || printf 'step\tseconds\n' > "$TIMINGS"

timed() {  # timed NAME CMD...: run CMD, append its wall time to the timings table
  local name=$1 start=$SECONDS
  shift
  echo ">> $*"
  "$@"
  printf '%s\t%s\n' "$name" "$((SECONDS - start))" >> "$TIMINGS"
}

for preset in $PRESETS; do
  timed "train:$preset" smoothbench-train -m "experiment=$preset" "scale=$SCALE" \
    ${LAUNCHER:+"launcher=$LAUNCHER"} progress=false "hydra.sweep.dir=$OUT/$preset"
done

# Li et al. surfaces of the final nets (the surfaces preset and Fig. 4's VGGs keep them)
for preset in surfaces fig4; do
  [ -d "$OUT/$preset" ] || continue
  for run in "$OUT/$preset"/[0-9]*/; do
    [ -f "$run/surfaces/2d.npz" ] && continue
    timed "surface:$preset/$(basename "$run")" smoothbench-surface "run_dir=$run" dims=2 \
      "points=$SURFACE_POINTS" name=2d
  done
done

FIG="$OUT/figures"
draw() {  # draw SCRIPT PRESET [ARGS...]: one figure from one preset's sweep, if it ran
  local script=$1 preset=$2
  shift 2
  [ -d "$OUT/$preset" ] || return 0
  timed "figure:$script:$preset" python "analysis/$script.py" "$OUT/$preset" --out "$FIG/$preset" "$@"
}
draw fig1 fig1
draw fig2 fig2
draw fig8 fig2
draw fig3 fig3
draw fig3 fig3_dln --layers 9 17
draw fig4 fig4
draw fig10 fig10
draw lp lp
draw lp lp_dln
draw hessian hessian
draw surfaces surfaces
draw surfaces fig4

timed report python analysis/report.py "$OUT"/*/ --out "$OUT/report"
echo "timings: $TIMINGS"
echo "report: $OUT/report/report.html"
