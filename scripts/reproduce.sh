#!/usr/bin/env bash
# Every paper figure from one command: run every experiment preset at SCALE, compute the loss
# surfaces, draw every figure and write the report.
#
#   scripts/reproduce.sh smoke|cpu|paper [local|slurm]
#
# Without a launcher, Hydra's basic launcher runs the jobs of each sweep one after another in
# this process tree (best on a laptop); `local` runs each sweep's jobs as parallel submitit
# processes; `slurm` submits every preset's sweep at once (each a job array; site settings in
# conf/local/default.yaml) and waits for all of them. The submitting process must live until
# the jobs end: on a login node run it inside tmux or screen, or detached:
#   nohup scripts/reproduce.sh paper slurm > reproduce-paper.log 2>&1 &
# Results go to multirun/reproduce-SCALE/<preset>/<job>/, figures to .../figures/<figure>/, the
# page to .../report/report.html, wall times to .../timings.tsv. After each sweep, and at the
# end, a summary lists every job's status and run dir and the commands that come next.
# Re-running the script resumes: finished runs are kept, interrupted ones continue from their
# checkpoints. With `local`, JOBS=N runs N jobs of a sweep at once (each run uses `threads`
# torch threads, default 1: on a 2-core machine JOBS=2 scripts/reproduce.sh cpu local).
# Choose presets with PRESETS="fig1 fig4" scripts/reproduce.sh cpu; which figure
# is drawn from which preset is the table in analysis/figures.py.
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
PRESETS=${PRESETS:-$(python analysis/figures.py presets)}
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

train() {  # train PRESET: the preset's sweep at SCALE with the chosen launcher
  timed "train:$1" smoothbench-train -m "experiment=$1" "scale=$SCALE" \
    ${LAUNCHER:+"launcher=$LAUNCHER"} ${JOBS:+"hydra.sweeper.max_batch_size=$JOBS"} \
    progress=false "hydra.sweep.dir=$OUT/$1"
}

sweep_dirs() {  # the sweep dirs of the chosen presets that exist
  local preset
  for preset in $PRESETS; do
    [ -d "$OUT/$preset" ] && echo "$OUT/$preset"
  done
  return 0
}

summary() {  # job statuses, run dirs and next commands; never stops the script
  python analysis/summary.py "$@" --out "$OUT" || true
}

if [ "$LAUNCHER" = slurm ]; then
  if [ -z "${TMUX:-}${STY:-}" ] && [ -t 1 ]; then
    echo "note: this process waits for every SLURM job; if the login session may end, stop it" \
      "(Ctrl-C; submitted jobs keep running) and rerun inside tmux/screen or with nohup" >&2
  fi
  # every preset's sweep at once: each submitit process submits its array and waits on it
  declare -A PIDS=()
  for preset in $PRESETS; do
    train "$preset" > "$OUT/$preset.submit.log" 2>&1 &
    PIDS[$preset]=$!
    echo "submitting $preset (log: $OUT/$preset.submit.log)"
  done
  FAILED=""
  for preset in "${!PIDS[@]}"; do
    if ! wait "${PIDS[$preset]}"; then
      FAILED="$FAILED $preset"
      echo "sweep $preset ended with an error; see $OUT/$preset.submit.log" >&2
    fi
  done
else
  FAILED=""
  for preset in $PRESETS; do
    train "$preset" || FAILED="$FAILED $preset"
    [ -d "$OUT/$preset" ] && summary "$OUT/$preset"
  done
fi

# Li et al. surfaces of the final nets (the surfaces preset and Fig. 4's VGGs keep them); of
# Fig. 4's runs only seed 0's (a surface is a picture of one net: more seeds add cost, not a claim)
for preset in surfaces fig4; do
  [ -d "$OUT/$preset" ] || continue
  for run in "$OUT/$preset"/[0-9]*/; do
    [ -f "$run/surfaces/2d.npz" ] && continue
    [ -f "$run/status.json" ] && grep -q '"finished"' "$run/status.json" || continue
    [ "$preset" = fig4 ] && ! grep -qx 'seed: 0' "$run/.hydra/config.yaml" && continue
    timed "surface:$preset/$(basename "$run")" smoothbench-surface "run_dir=$run" dims=2 \
      "points=$SURFACE_POINTS" name=2d
  done
done

# every figure of the table in analysis/figures.py whose preset ran
FIG="$OUT/figures"
while IFS=$'\t' read -r figure script preset args; do
  case " $PRESETS " in *" $preset "*) ;; *) continue ;; esac
  [ -d "$OUT/$preset" ] || continue
  # a figure the runs cannot draw says why on stderr (exit 2); the others still get drawn
  # shellcheck disable=SC2086  # args: the table's words
  timed "figure:$figure" python "analysis/$script.py" "$OUT/$preset" --out "$FIG/$preset" $args \
    || echo "figure $figure not drawn (see the line above)" >&2
done < <(python analysis/figures.py draws)

mapfile -t SWEEPS < <(sweep_dirs)
if [ "${#SWEEPS[@]}" -gt 0 ]; then
  # the verdict of every claim (claims.txt, claims.json); the report opens with its table
  timed claims smoothbench-claims "$OUT" --out "$OUT" || echo "claims not checked (see above)" >&2
  timed report python analysis/report.py "${SWEEPS[@]}" --out "$OUT/report"
  echo
  summary "${SWEEPS[@]}"
fi
echo "timings: $TIMINGS"
echo "report: $OUT/report/report.html"
[ -z "$FAILED" ] || { echo "sweeps that ended with an error:$FAILED" >&2; exit 1; }
