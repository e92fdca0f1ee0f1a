#!/usr/bin/env bash
# Eight smoke runs whose metrics.jsonl a refactor must leave byte-identical (probes off, default
# and full; noisy BN; a ResNet with every probe; the DLN preset; short checkpoint/eval periods;
# a 30-step run), and a byte comparison of two such sets.
#
#   scripts/trajectory_check.sh run OUT        # before a change: git stash / checkout, then run
#   scripts/trajectory_check.sh run OUT2       # after it
#   scripts/trajectory_check.sh compare OUT OUT2
#
# A few minutes on 2 cores (the two probes=full runs take most of it).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=(
  "scale=smoke probes=off"
  "scale=smoke probes=default"
  "scale=smoke probes=full steps=6"
  "scale=smoke norm=noisy_batch probes=default"
  "scale=smoke norm=none probes=full steps=4 model=resnet20"
  "experiment=fig3_dln scale=smoke"
  "scale=smoke probes=default checkpoint_every=5 eval_every=5"
  "scale=smoke steps=30 checkpoint_every=10 eval_every=7 probes=default"
)
case "${1:-}" in
  run)
    out=${2:?usage: $0 run OUT}
    if [ -e "$out" ]; then echo "$0: $out exists; choose a new folder" >&2; exit 2; fi
    export WANDB_MODE=offline MPLBACKEND=Agg
    for i in "${!RUNS[@]}"; do
      # shellcheck disable=SC2086
      smoothbench-train ${RUNS[$i]} progress=false hydra.run.dir="$out/r$((i + 1))" \
        > "$out.r$((i + 1)).log" 2>&1 || { echo "run $((i + 1)) (${RUNS[$i]}) failed" >&2; exit 1; }
    done
    echo "$out: ${#RUNS[@]} runs" ;;
  compare)
    a=${2:?usage: $0 compare OUT OUT2}; b=${3:?usage: $0 compare OUT OUT2}; differ=0
    for i in "${!RUNS[@]}"; do
      n=$((i + 1))
      if cmp -s "$a/r$n/metrics.jsonl" "$b/r$n/metrics.jsonl"; then
        echo "r$n identical  (${RUNS[$i]})"
      else
        echo "r$n DIFFERS    (${RUNS[$i]})"; differ=1
      fi
    done
    exit $differ ;;
  *) echo "usage: $0 run OUT | compare OUT OUT2" >&2; exit 2 ;;
esac
