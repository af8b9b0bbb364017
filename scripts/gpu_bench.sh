#!/usr/bin/env bash
# The GPU benchmark set, in one command, for a machine with one CUDA GPU (not yet run on one; an estimate
# from the earlier H100 timings: 5 to 10 minutes, most of it building the Pythia checkpoints and
# starting processes):
#   1. GPT-2 small (the targets): scripts/bench.py, 8 checkpoints, 2 paired rounds, every contender but
#      TransformerLens 3.9; its last line is the CUDA summary line.
#   2. the scan's scores on the GPU against the CPU's (scripts/device_agreement.py, 2 checkpoints, 1e-4).
#   3. Pythia-1.4B shape (random fp16 model.safetensors, 4 checkpoints): the paired floors and the scan.
#   4. the same, --layer-by-layer (one layer's buffers on the GPU at a time).
#   5. (at the end of step 1) the GPT-2 scan once more under cProfile: where its time goes.
# Each step's output goes to $OUT (default ./gpu-bench-out) as well as to the terminal.
#
#   scripts/gpu_bench.sh                       # on the GPU machine
#   WHEELS=/path/to/wheels scripts/gpu_bench.sh   # TransformerLens 4.3 installed from wheels first (no network)
#   scripts/gpu_bench.sh --device cpu --smoke  # the same steps on tiny shapes: checks the script runs
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
SMOKE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --smoke) SMOKE=1; shift ;;
        *) echo "unknown argument $1 (known: --device DEVICE, --smoke)" >&2; exit 2 ;;
    esac
done
PYTHON=${PYTHON:-python3}
WORK=${WORK:-/tmp/inductscan-bench}
OUT=${OUT:-gpu-bench-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$SMOKE" = 1 ]; then
    GPT2=tiny PYTHIA=pythia-tiny GPT2_CHECKPOINTS=3 PYTHIA_CHECKPOINTS=2 ROUNDS=1
else
    GPT2=gpt2-small PYTHIA=pythia-1.4b GPT2_CHECKPOINTS=8 PYTHIA_CHECKPOINTS=4 ROUNDS=2
fi

if [ -n "${WHEELS:-}" ]; then
    "$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELS" transformer-lens
fi
SKIP=tl39
if ! "$PYTHON" -c "import transformer_lens" 2>/dev/null; then
    echo "TransformerLens is not installed (WHEELS=... installs it): its loop is left out" | tee "$OUT/note.txt"
    SKIP=tl39,tl4
fi
"$PYTHON" - "$DEVICE" <<'PY' | tee "$OUT/device.txt"
import sys, platform, torch
device = sys.argv[1]
name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu"
print(f"device={device} name={name} torch={torch.__version__} cuda={torch.version.cuda} threads={torch.get_num_threads()}")
PY

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee -a "$OUT/device.txt"
fi

# Each step runs even when an earlier one failed (a failed step is named, and the script exits 1 at
# the end): one lease of the machine should bring back every number it can.
FAILED=""
step() {  # step NAME FILE COMMAND...: the command's output to the terminal and to $OUT/FILE
    local name="$1" file="$OUT/$2" started=$SECONDS
    shift 2
    echo "== $name" | tee "$file"
    if ! "$@" 2>&1 | tee -a "$file"; then
        FAILED="$FAILED; $name"
    fi
    echo "($name: $((SECONDS - started)) s)" | tee -a "$file"
}

step "1. $GPT2" "1-$GPT2.txt" "$PYTHON" scripts/bench.py --device "$DEVICE" --shape "$GPT2" \
    --checkpoints "$GPT2_CHECKPOINTS" --rounds "$ROUNDS" --skip "$SKIP" --work "$WORK" --profile "$OUT/5-profile-$GPT2.txt"
step "2. scores on $DEVICE against the CPU" "2-agreement.txt" \
    "$PYTHON" scripts/device_agreement.py --work "$WORK" --shape "$GPT2" --checkpoints 2

# Pythia: only the paired floors and the scan (the target there is the read floor); the loops would
# take minutes per checkpoint to load a 1.4B model and add nothing to that ratio.
PYTHIA_SKIP=scan-verify,hf,tl4,tl39
step "3. $PYTHIA" "3-$PYTHIA.txt" "$PYTHON" scripts/bench.py --device "$DEVICE" --shape "$PYTHIA" \
    --checkpoints "$PYTHIA_CHECKPOINTS" --rounds 1 --skip "$PYTHIA_SKIP" --work "$WORK"
step "4. $PYTHIA --layer-by-layer" "4-$PYTHIA-layer-by-layer.txt" "$PYTHON" scripts/bench.py --device "$DEVICE" \
    --shape "$PYTHIA" --checkpoints "$PYTHIA_CHECKPOINTS" --rounds 1 --skip "$PYTHIA_SKIP" --work "$WORK" --layer-by-layer

echo "== summary lines"
grep -h "^shape=\|^scores_agree=" "$OUT"/[1234]-*.txt || true
if [ -n "$FAILED" ]; then
    echo "failed steps: ${FAILED#; }" >&2
    exit 1
fi
