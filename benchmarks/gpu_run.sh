#!/usr/bin/env bash
# Every GPU figure issue 23 asks for, in one run on one GPU (docs/gpu.md):
#   1. the project's gpu-marked tests on the image's own stack (the crash check);
#   2. training rows: plain loop, the original recipe, ours, the dataloader alone, for
#      whisper-base, whisper-small and whisper-large-v3 shapes (benchmarks/train_gpu.py);
#   3. speed-up variants of the plain loop on whisper-small (same loss or not, and speed);
#   4. memory: lora-24gb-gpu.yaml with large-v3 in 24 GB, whisper-small in 16 GB,
#      full-gpu.yaml with whisper-small in 24 GB, each at its batch and larger ones;
#   5. inference: CTranslate2 float16 / int8_float16 and transformers fp16, RTF on test.wav
#      and a 5-minute file, batched throughput (benchmarks/infer_gpu.py).
# Each phase has its own time cap (seconds, overridable: TESTS_S TRAIN_S VARIANTS_S MEMORY_S
# INFER_S); the whole fits a 600 s device call. Results go to $OUT (or the first argument)
# as they come: a phase cut by its cap keeps the rows it finished.
#
# Here, before the device call (the GPU machine reaches no network):
#   bash benchmarks/gpu_run.sh --prepare     # gpu/: wheels the image lacks, tokenizer home
# On the device, with carry ["gpu"]:
#   bash benchmarks/gpu_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
HOME_DIR="$PWD/gpu/home"

if [ "${1:-}" = "--prepare" ]; then
    set -e
    mkdir -p gpu/.whl "$HOME_DIR/embedded/whisper-base"
    # the wheels the GPU image (torch 2.11, transformers 5.17, accelerate 1.15) lacked on
    # 2026-12-05, for its Python 3.12; the image's own transformers is what is tested
    "${PIP:-.venv/bin/pip}" download -q --no-deps --only-binary=:all: -d gpu/.whl \
        --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform any \
        "peft==0.21.2" "soundfile==0.14.0" "cffi==2.1.1" "pycparser==3.12" \
        "jiwer==4.0.0" "rapidfuzz==3.14.6" "click==8.5.1" "opencc==1.4.2" \
        "ctranslate2==4.8.5" "requests" "charset-normalizer" "urllib3" "idna" "certifi"
    # the embedded whisper-base's tokenizer and configs (the random-weight shapes need
    # only these; the real weights are too large to carry)
    src="$(.venv/bin/python -c 'from whisper_finetune.models.resolve import resolve_model; print(resolve_model("embedded:whisper-base"))')"
    dst="$HOME_DIR/embedded/whisper-base/transformers"
    mkdir -p "$dst"
    for f in config.json generation_config.json preprocessor_config.json tokenizer.json \
        tokenizer_config.json whisper_finetune.json; do
        [ -f "$src/$f" ] && cp "$src/$f" "$dst/"
    done
    : > "$dst/model.safetensors"
    du -sh gpu
    exit 0
fi

OUT="${1:-${OUT:-gpu-results}}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD/src"
[ -d "$HOME_DIR" ] && export WHISPER_FINETUNE_HOME="$HOME_DIR"
if [ -d gpu/.whl ] && [ "${DEVICE:-cuda}" = cuda ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir gpu/.whl/*.whl 2>&1 | tail -2
fi
WORK="${WORK:-/tmp/gpu-run-work}"
# a dry run of this script's logic on the CPU:
#   DEVICE=cpu SHAPES=tiny VARIANT_SHAPE=tiny MEMORY="lora-24gb-gpu.yaml:tiny:24:4" \
#   INFER_SHAPES=tiny STEPS=1 BATCH=2 PYTHON=.venv/bin/python bash benchmarks/gpu_run.sh /tmp/dry
DEVICE="${DEVICE:-cuda}"
SHAPES="${SHAPES:-base small large-v3}"
VARIANT_SHAPE="${VARIANT_SHAPE:-small}"
MEMORY="${MEMORY:-lora-24gb-gpu.yaml:large-v3:24:24 lora-24gb-gpu.yaml:small:16:32 full-gpu.yaml:small:24:32}"
INFER_SHAPES="${INFER_SHAPES:-small large-v3}"
STEPS="${STEPS:-10}"
BATCH="${BATCH:-16}"
mkdir -p "$WORK"
start=$(date +%s)
phase() { echo "== $1 ($(( $(date +%s) - start )) s)" | tee -a "$OUT/phases.txt"; }

phase "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/smi.txt"
"$PY" -c "import torch, transformers, peft, accelerate; print(torch.__version__, torch.version.cuda, transformers.__version__, peft.__version__, accelerate.__version__)" \
    2>&1 | tee "$OUT/versions.txt"
nproc | tee -a "$OUT/versions.txt"

phase "1. gpu tests"
# the TrainingArguments against the image's own transformers, then the gpu-marked training
timeout 40 "$PY" -m pytest -q -p no:cacheprovider -rA tests/training/test_trainer_args.py \
    > "$OUT/gpu-tests.log" 2>&1
echo "pytest rc $?" >> "$OUT/gpu-tests.log"
timeout "${TESTS_S:-70}" "$PY" -m pytest -q -p no:cacheprovider -rA -m gpu \
    tests/training/test_paths.py >> "$OUT/gpu-tests.log" 2>&1
echo "pytest rc $?" >> "$OUT/gpu-tests.log"
tail -4 "$OUT/gpu-tests.log"

phase "2. training rows"
timeout "${TRAIN_S:-210}" "$PY" benchmarks/train_gpu.py --out "$OUT/train" --work "$WORK" \
    --device "$DEVICE" --shapes $SHAPES --rows plain recipe ours dataloader \
    --batch "$BATCH" --steps "$STEPS" --warmup 3 --row_timeout 120 2> "$OUT/train.err"

phase "3. variants ($VARIANT_SHAPE)"
timeout "${VARIANTS_S:-60}" "$PY" benchmarks/train_gpu.py --out "$OUT/variants" --work "$WORK" \
    --device "$DEVICE" --shapes "$VARIANT_SHAPE" --rows ours-packed \
    --variants bf16-base fused-adamw compile --batch "$BATCH" --steps "$STEPS" --warmup 3 \
    --row_timeout 60 2> "$OUT/variants.err"

phase "4. memory"
timeout "${MEMORY_S:-80}" "$PY" benchmarks/train_gpu.py --out "$OUT/memory" --work "$WORK" \
    --device "$DEVICE" --shapes --rows --memory $MEMORY --batch "$BATCH" --row_timeout 60 \
    2> "$OUT/memory.err"

phase "5. inference"
timeout "${INFER_S:-80}" "$PY" benchmarks/infer_gpu.py --out "$OUT/infer" --work "$WORK" \
    --device "$DEVICE" --shapes $INFER_SHAPES --row_timeout 45 2> "$OUT/infer.err"

phase "done"
for f in train variants memory infer; do tail -3 "$OUT/$f.err" 2>/dev/null; done
