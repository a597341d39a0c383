#!/usr/bin/env bash
# One prepared GPU check (< 10 min on a bare H100/H200): parity on CUDA (bf16 tolerances), medium bf16
# decode tokens/s at batch 1 eager / compiled (CUDA graphs) / int8 / int4, aggregate tokens/s of the
# engine at 8 and 32 concurrent requests (compiled, padded buckets), task=tts RTF + time to first audio
# (a fresh reference and a saved voice, whose prompt comes from the prefix cache), VITS and Firefly RTF,
# peak GPU memory; with --reference DIR the original v1.1.2 decode compiled as its generate.py does,
# beside ours on the same weights. Without CUDA it runs the same steps on CPU at small sizes (a dry run)
# and says so; a step that fails prints FAIL and the rest still run.
#
#   bash benchmarks/gpu_check.sh [--reference DIR]   # PYTHON=... the interpreter, OUT=dir for the log
set -u
REFERENCE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --reference) REFERENCE="$(cd "$2" && pwd)"; shift 2 ;;
    *) echo "usage: gpu_check.sh [--reference DIR]" >&2; exit 2 ;;
  esac
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
LOG="${OUT:-/tmp}/gpu_check.log"
export PYTHONPATH="$ROOT/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=offline
export SPEECHLM_REFERENCE="${SPEECHLM_REFERENCE:-$ROOT/../shared/reference}"
[ -d "$SPEECHLM_REFERENCE" ] || export SPEECHLM_REFERENCE="$ROOT/shared/reference"
cd "$ROOT" || exit 1
T0=$(date +%s)
step() {  # step <seconds> <title> <command...>
  local limit=$1 title=$2; shift 2
  echo; echo "=== $title (limit ${limit}s, at $(( $(date +%s) - T0 ))s)"
  timeout "$limit" "$@"; local rc=$?
  [ $rc -eq 0 ] || echo "FAIL/timeout: '$title' exited $rc"
}
{
  echo "gpu_check on $(hostname) $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
  if "$PY" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    DEV=cuda; TOKENS=200; SIZE=official; MODES=eager,compiled,int8,int4; PRESET=dual_ar_2_codebook_medium
    ROWS=8,32
  else
    DEV=cpu; TOKENS=8; SIZE=tiny; MODES=eager,int8; PRESET=tiny; ROWS=2,4
    echo "NO CUDA: dry run on CPU (small sizes; the numbers are not GPU numbers)"
  fi
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  step 120 "parity tests (CPU suite: int8 + text2semantic fixtures)" \
    "$PY" -m pytest -q -x -p no:cacheprovider tests/parity/test_int8_parity.py tests/parity/test_text2semantic_parity.py
  step 60 "parity on $DEV (bf16 tolerances)" "$PY" benchmarks/device_check.py --device $DEV --sections parity
  if [ $DEV = cuda ]; then
    step 300 "decode medium on $DEV: $MODES" "$PY" benchmarks/device_check.py --device $DEV --sections decode \
      --modes $MODES --tokens $TOKENS
  else
    step 240 "decode tiny on cpu: $MODES" "$PY" benchmarks/device_check.py --device cpu --sections decode \
      --preset tiny --modes $MODES --tokens $TOKENS
  fi
  step 240 "engine: aggregate tokens/s at $ROWS concurrent requests ($PRESET)" "$PY" benchmarks/device_check.py \
    --device $DEV --sections batch --preset $PRESET --rows $ROWS --tokens $TOKENS
  if [ -n "$REFERENCE" ]; then
    step 240 "v1.1.2 compiled beside ours ($PRESET, batch 1)" "$PY" benchmarks/device_check.py --device $DEV \
      --sections reference --preset $PRESET --tokens $TOKENS --reference "$REFERENCE"
  fi
  step 150 "task=tts ($SIZE, VITS) RTF + time to first audio (fresh reference; saved voice cold / cached)" "$PY" benchmarks/e2e.py --device $DEV --size $SIZE \
    --max-new-tokens 150
  [ $DEV = cuda ] && step 90 "task=tts ($SIZE, int8, VITS)" "$PY" benchmarks/e2e.py --device $DEV --size $SIZE \
    --quantize int8 --max-new-tokens 150
  if [ $DEV = cuda ]; then
    step 120 "VITS / Firefly RTF ($DEV): one pass, 1 window, 8 concurrent windows batched" "$PY" benchmarks/device_check.py --device $DEV --sections vocoders --windows 8
  else
    echo; echo "=== VITS / Firefly RTF: skipped on CPU (official-size vocoders: see benchmarks/codec.py, vits.py)"
  fi
  echo; echo "gpu_check done in $(( $(date +%s) - T0 )) s"
} 2>&1 | tee "$LOG"
