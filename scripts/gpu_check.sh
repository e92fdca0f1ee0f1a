#!/usr/bin/env bash
# One command for anyone holding a GPU: the GPU tests, the throughput benchmark, a short
# paper-scale run (VGG-16, batch 128) and runs per hour for N = 1, 2, 4, 8 concurrent small runs
# on one GPU, then ONE table headed by the card's name. About 5-8 minutes on one H100.
#
#   scripts/gpu_check.sh [CIFAR10.npz]
#
# Data: CIFAR-10 as an ImageFolder tree (train/<class>/*.jpg, test/<class>/*.jpg). Give either
#   - a packed file (argument 1 or $CIFAR10_PACKED): one .npz holding `data` (all files' bytes,
#     uint8), `offsets` (int64, n + 1) and `names` (the relative paths joined by newlines); it is
#     unpacked under $OUT. One file travels to a GPU machine far faster than 60,000 small ones;
#   - or the tree itself in $SMOOTHBENCH_CIFAR10_JPEG.
#   Without either, the paper-scale run and the benchmark use the embedded digits (noted).
#
# Python: the current `python3` (or $PYTHON) with torch. This script downloads nothing. On a
# bare GPU box that lacks the pure-Python dependencies, carry them as wheels: on a machine with
# network,
#   pip download --no-deps --dest wheels hydra-core omegaconf antlr4-python3-runtime==4.9.3 \
#       submitit hydra-submitit-launcher cloudpickle wandb
# copy `wheels/` over and set WHEELS=<that dir>: if `import hydra` fails, the script runs
#   pip install --no-index --no-deps --target "$OUT/site" "$WHEELS"/*.whl
# and puts "$OUT/site" and the repo's src/ on PYTHONPATH (nothing is installed system-wide).
#
# Knobs (environment), mostly for a quick dry run on a CPU:
#   DEVICE=cuda            cuda | cpu
#   OUT=gpu-check-<time>   where everything goes (runs, logs, results.md)
#   PAPER_STEPS=300        steps of the paper-scale run; PAPER_MODEL=vgg16 PAPER_WIDTH=1
#   RPH_NS="1 2 4 8"       concurrent runs for runs per hour; RPH_STEPS=2000 steps each
#   RPH_ARGS="model=vgg11 model.width=0.25 batch_size=128"   the small run
#   BENCH_STEPS=300        timed steps per benchmark loop; BENCH_ARGS: more benchmark options
#   SKIP_TESTS=1           skips pytest -m gpu; BF16=1 times bf16 autocast on a CPU as well
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
OUT=$(realpath -m "${OUT:-gpu-check-$(date +%Y%m%d-%H%M%S)}")
PAPER_STEPS=${PAPER_STEPS:-300}
PAPER_MODEL=${PAPER_MODEL:-vgg16}
PAPER_WIDTH=${PAPER_WIDTH:-1}
RPH_NS=${RPH_NS:-"1 2 4 8"}
RPH_STEPS=${RPH_STEPS:-2000}
RPH_ARGS=${RPH_ARGS:-"model=vgg11 model.width=0.25 batch_size=128"}
BENCH_STEPS=${BENCH_STEPS:-300}
read -r -a BENCH_OPTS <<< "${BENCH_ARGS:-}"
PACKED=${1:-${CIFAR10_PACKED:-}}
mkdir -p "$OUT"
export WANDB_MODE=offline WANDB_SILENT=true MPLBACKEND=Agg
export SMOOTHBENCH_CACHE=${SMOOTHBENCH_CACHE:-$OUT/cache}
log() { echo "[gpu_check $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------- Python dependencies
if ! "$PY" -c "import hydra, omegaconf, submitit, hydra_plugins.hydra_submitit_launcher" \
    2>/dev/null; then
  if [ -z "${WHEELS:-}" ]; then
    echo "gpu_check: hydra/submitit are missing and WHEELS is not set (see the header)" >&2
    exit 2
  fi
  log "installing the wheels of $WHEELS into $OUT/site"
  "$PY" -m pip install -q --no-index --no-deps --target "$OUT/site" "$WHEELS"/*.whl
  export PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import smoothbench" 2>/dev/null; then
  export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import pytest" 2>/dev/null; then SKIP_TESTS=1; log "no pytest: tests skipped"; fi
TRAIN=("$PY" -m smoothbench.train)

# ---------------------------------------------------------------- data
DATA_ARGS=(data=digits)
DATA_NOTE="embedded digits (no CIFAR-10 given)"
if [ -n "$PACKED" ]; then
  log "unpacking $PACKED"
  "$PY" - "$PACKED" "$OUT/cifar10-jpeg" <<'EOF'
import os, sys
import numpy as np
packed, dst = sys.argv[1], sys.argv[2]
z = np.load(packed)
data, offsets = z["data"].tobytes(), z["offsets"]
for i, name in enumerate(z["names"].item().decode().split("\n")):
    path = os.path.join(dst, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data[offsets[i]:offsets[i + 1]])
EOF
  export SMOOTHBENCH_CIFAR10_JPEG="$OUT/cifar10-jpeg"
fi
if [ -n "${SMOOTHBENCH_CIFAR10_JPEG:-}" ]; then
  DATA_ARGS=(data=imagefolder "data.root=$SMOOTHBENCH_CIFAR10_JPEG")
  DATA_NOTE="CIFAR-10 (ImageFolder, $SMOOTHBENCH_CIFAR10_JPEG)"
fi

# the local launcher shows each job GPU 0; keep the card this shell was given instead
LAUNCH_ARGS=(launcher=local)
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  LAUNCH_ARGS+=("+hydra.launcher.setup=[\"export CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES\"]")
fi

ROWS=()
row() { ROWS+=("| $1 | $2 |"); }
SECONDS_START=$SECONDS

# ---------------------------------------------------------------- 1. GPU tests
if [ -z "${SKIP_TESTS:-}" ]; then
  log "pytest -m gpu"
  set +e
  (cd "$REPO" && "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py) \
    > "$OUT/pytest_gpu.log" 2>&1
  set -e
  row "pytest -m gpu" "$(tail -n 1 "$OUT/pytest_gpu.log")"
fi

# ---------------------------------------------------------------- 2. benchmark
log "benchmark"
BENCH_MODEL=("model=$PAPER_MODEL" "model.width=$PAPER_WIDTH" batch_size=128 "${DATA_ARGS[@]}")
"$PY" scripts/benchmark.py --device "$DEVICE" --steps "$BENCH_STEPS" --json "$OUT/bench.json" \
  "${BENCH_OPTS[@]}" "${BENCH_MODEL[@]}" > "$OUT/benchmark.log" 2>&1 || { tail -20 "$OUT/benchmark.log"; exit 1; }
while IFS=$'\t' read -r name value; do row "$name" "$value"; done < <("$PY" - "$OUT/bench.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"plain step ({' '.join(r['overrides'][:3])})\t{1000 * r['plain_step_s']:.2f} ms")
print(f"train() step, probes=off, deterministic=false\t{1000 * r['loop_step_s']:.2f} ms"
      f" = {r['loop_over_plain']:.2f} x plain (target <= 1.10)")
if "deterministic_step_s" in r:
    print(f"deterministic=true step\t{1000 * r['deterministic_step_s']:.2f} ms"
          f" = {r['deterministic_over_loop']:.2f} x deterministic=false")
h = r.get("hessian")
if h:
    print(f"one HVP / graph build\t{1000 * h['hvp_s']:.1f} ms / {1000 * h['build_s']:.1f} ms")
    print(f"Lanczos / (HVPs x HVP + graph)\t{h['lanczos_over_hvps_plus_build']:.2f}"
          f" ({h['lanczos_hvps']} HVPs; target <= 1.3)")
    print(f"trace probe\t{h['trace_probe_in_hvps']:.2f} HVPs (target <= 1.2)")
EOF
)

# the documented speed option: bf16 autocast + channels_last (the probes stay fp32)
if [ "$DEVICE" = cuda ] || [ -n "${BF16:-}" ]; then
  log "benchmark: bf16 autocast + channels_last"
  "$PY" scripts/benchmark.py --device "$DEVICE" --steps "$BENCH_STEPS" --json "$OUT/bench_bf16.json" \
    --no-probes --no-deterministic "${BENCH_OPTS[@]}" "${BENCH_MODEL[@]}" autocast=true \
    channels_last=true > "$OUT/benchmark_bf16.log" 2>&1 || { tail -20 "$OUT/benchmark_bf16.log"; exit 1; }
  row "bf16 autocast + channels_last: plain / train() step" "$("$PY" -c "
import json; r = json.load(open('$OUT/bench_bf16.json'))
print(f\"{1000 * r['plain_step_s']:.2f} ms / {1000 * r['loop_step_s']:.2f} ms\")")"
fi

# ---------------------------------------------------------------- 3. paper-scale run
log "paper-scale run: $PAPER_MODEL width $PAPER_WIDTH, batch 128, $PAPER_STEPS steps"
start=$(date +%s.%N)
"${TRAIN[@]}" "model=$PAPER_MODEL" "model.width=$PAPER_WIDTH" batch_size=128 "${DATA_ARGS[@]}" \
  "steps=$PAPER_STEPS" probes=default deterministic=false progress=false "device=$DEVICE" \
  eval_every=100000 "hydra.run.dir=$OUT/paper" > "$OUT/paper.log" 2>&1 \
  || { tail -20 "$OUT/paper.log"; exit 1; }
end=$(date +%s.%N)
row "paper-scale run ($PAPER_STEPS steps, probes=default, start-up included)" \
  "$("$PY" -c "t=$end-$start; print(f'{t:.1f} s; 15k steps ~ {t / $PAPER_STEPS * 15000 / 60:.1f} min')")"

# ---------------------------------------------------------------- 4. runs per hour
for n in $RPH_NS; do
  log "runs per hour: $n concurrent runs"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086  # RPH_ARGS is a list of overrides
  "${TRAIN[@]}" -m "${LAUNCH_ARGS[@]}" "hydra.sweeper.max_batch_size=$n" "seed=range(0,$n)" \
    $RPH_ARGS "${DATA_ARGS[@]}" "steps=$RPH_STEPS" probes=off deterministic=false \
    progress=false "device=$DEVICE" eval_every=100000 checkpoint_every=100000 \
    "hydra.sweep.dir=$OUT/rph$n" > "$OUT/rph$n.log" 2>&1 || { tail -20 "$OUT/rph$n.log"; exit 1; }
  end=$(date +%s.%N)
  finished=$(grep -l '"finished"' "$OUT"/rph"$n"/*/status.json 2>/dev/null | wc -l)
  row "runs/hour, N=$n at once ($RPH_ARGS, $RPH_STEPS steps)" \
    "$("$PY" -c "t=$end-$start; print(f'{$finished * 3600 / t:.0f} ({$finished} runs in {t:.1f} s)')")"
done

# ---------------------------------------------------------------- the table
if command -v nvidia-smi >/dev/null && [ "$DEVICE" = cuda ]; then
  CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
else
  CARD="CPU: $(nproc) cores ($DEVICE)"
fi
TORCH=$("$PY" -c "import torch; print(torch.__version__, 'CUDA', torch.version.cuda)")
{
  echo "### smoothbench gpu_check: $CARD"
  echo
  echo "torch $TORCH; data: $DATA_NOTE; commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null \
    || echo unknown); total $((SECONDS - SECONDS_START)) s"
  echo
  echo "| measurement | result |"
  echo "|---|---|"
  printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/results.md"
