#!/usr/bin/env bash
# The lowest declared versions, tested: builds .venv-lowest with the lower bound that
# pyproject.toml declares for each package in LOWEST (and whatever those need), then runs a
# focused subset of the training, merge, convert and inference tests on the CPU.
#
#   scripts/test-lowest.sh            # build (or reuse) .venv-lowest, run the subset
#   scripts/test-lowest.sh -x -k merge  # extra arguments go to pytest
#
# The pins are read from pyproject.toml, so raising a bound there changes what is tested.
# torch's lower bound comes from PyPI as a CUDA build (about 3 GB of downloads and 5 GB in
# the venv; it runs on the CPU): PyPI has no CPU-only Linux build of an old torch.
# The venv is rebuilt only when the pins change (a stamp file inside it records them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${LOWEST_VENV:-.venv-lowest}"
LOWEST="torch transformers peft accelerate ctranslate2 faster-whisper tokenizers safetensors"

pins="$("$PY" - "$LOWEST" <<'PYEOF'
import re, sys, tomllib

wanted = sys.argv[1].split()
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
found = {}
for dep in deps:
    m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", dep)
    name = m.group(1).lower().replace("_", "-")
    low = re.search(r">=\s*([0-9][^,\s;]*)", m.group(2))
    if name in wanted:
        if not low:
            sys.exit(f"pyproject.toml: {dep!r} declares no lower bound (>=) to test")
        found[name] = low.group(1)
missing = [w for w in wanted if w not in found]
if missing:
    sys.exit(f"pyproject.toml: no dependency named {', '.join(missing)}")
print("\n".join(f"{n}=={v}" for n, v in found.items()))
PYEOF
)"
stamp="$VENV/lowest-pins.txt"
torch_pin="$(echo "$pins" | grep '^torch==')"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/torch-pin.txt" 2>/dev/null)" != "$torch_pin" ]; then
    echo "test-lowest: a new $VENV with $torch_pin"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch first, alone: with it installed, nothing below may replace it
    "$VENV/bin/python" -m pip install -q "$torch_pin"
    printf '%s\n' "$torch_pin" > "$VENV/torch-pin.txt"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$pins" ]; then
    echo "test-lowest: installing into $VENV"; echo "$pins" | sed 's/^/  /'
    rm -f "$stamp"
    printf '%s\n' "$pins" > "$VENV/constraints.txt"
    "$VENV/bin/python" -m pip install -q -c "$VENV/constraints.txt" -e . "pytest>=8"
    printf '%s\n' "$pins" > "$stamp"
fi
"$VENV/bin/python" - "$pins" <<'PYEOF'
import sys
from importlib.metadata import version

from packaging.version import Version

bad = []
for pin in sys.argv[1].split():
    name, want = pin.split("==")
    have = version(name)
    print(f"  {name} {have}")
    if Version(have.split("+")[0]) != Version(want):
        bad.append(f"{name} {have} (want {want})")
if bad:
    sys.exit("test-lowest: not the lowest versions: " + ", ".join(bad))
PYEOF
# a focused subset: LoRA training (with gradient checkpointing: the TrainingArguments
# path), merge, CTranslate2 conversion, both inference backends, the trainer's arguments
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/training/test_trainer_args.py \
    tests/training/test_train.py::test_lora_with_gradient_checkpointing_learns \
    tests/training/test_train.py::test_config_validation \
    tests/training/test_merge.py::test_merged_logits_equal_the_adapted_model \
    tests/training/test_merge.py::test_merged_model_converts_to_ctranslate2_and_transcribes \
    tests/models/test_convert.py::test_tiny_model_converts_with_the_files_faster_whisper_needs \
    tests/models/test_convert.py::test_plain_ct2_transformers_converter_works_on_our_folders \
    "tests/inference/test_transcriber.py::test_tiny_model_batch_matches_one_by_one" \
    tests/inference/test_transcriber.py::test_both_backends_detect_the_same_language_on_the_same_weights \
    "$@"
