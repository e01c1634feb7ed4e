#!/usr/bin/env bash
# The package as a user installs it, the bundle as a user downloads it (CI runs this, see .ci/run):
#   1. build the wheel (the package's sources only, build isolation as `pip install` does);
#   2. install it into a fresh virtual environment: torch==2.13.0 first, then the wheel with
#      requirements/constraints.txt (no editable install, no checkout on sys.path);
#   3. from another working directory, run get_transforms() with its defaults (the package alone), then
#      copy bundle/ to a temporary folder outside the repository and run inference on three demo
#      images and one short training (1 epoch, 64x64) from there.
# It fails unless medt_monai is imported from the new environment, the fused CPU attention kernel
# is compiled from the wheel's C++ source and used (no fallback warning in any output), and the
# masks, weights and checkpoint are written into the copy's eval/ and models/ folders.
#
# Usage: bash scripts/check_wheel_install.sh [PYTHON]   (PYTHON: interpreter of the new environment,
#        default python3). Everything it creates lies in one temporary folder, removed at the end
#        (MEDT_KEEP_WHEEL_CHECK=1 keeps it and prints its path).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${1:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/medt-wheel-check.XXXXXX")"
if [[ "${MEDT_KEEP_WHEEL_CHECK:-0}" == 1 ]]; then
    trap 'echo "kept $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset PYTHONPATH MEDT_MONAI_CPU_KERNEL
FALLBACK="could not build the fused CPU attention kernel"

fail() { echo "check_wheel_install: $*" >&2; exit 1; }
no_fallback() { if grep -q "$FALLBACK" "$1"; then fail "$1: the fused kernel fell back to PyTorch"; fi; }

echo "== 1. wheel"
mkdir "$WORK/src"
tar -C "$REPO" --exclude=__pycache__ -cf - pyproject.toml README.md medt_monai | tar -C "$WORK/src" -xf -
"$PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/medt_monai-*-py3-none-any.whl)"
echo "$(basename "$WHEEL")"

echo "== 2. fresh environment"
"$PYTHON" -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q torch==2.13.0 && "$PY" -m pip install -q -c "$REPO/requirements/constraints.txt" "$WHEEL"

echo "== 3. a copy of the bundle, run from another working directory"
BUNDLE="$WORK/downloads/medt_bundle"
mkdir -p "$BUNDLE" "$WORK/elsewhere" "$WORK/images"
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    # the bundle's own files, not the outputs of local runs in bundle/eval or bundle/models
    (cd "$REPO/bundle" && git ls-files -z | xargs -0 tar -cf -) | tar -C "$BUNDLE" -xf -
else
    cp -r "$REPO/bundle/." "$BUNDLE"
fi
cd "$WORK/elsewhere"
export TORCH_EXTENSIONS_DIR="$WORK/torch_extensions"  # compiled here from the wheel's source, not a cached build
export MEDT_MONAI_DATA_DIR="$WORK/demo"               # the demo data set
"$PY" - "$WORK" "$WORK/images" >"$WORK/kernel.log" 2>&1 <<'EOF' || { cat "$WORK/kernel.log"; fail "kernel check failed"; }
import shutil
import sys
from pathlib import Path

import medt_monai
import medt_monai.data
from medt_monai._extensions import cpu_attention_available

work, images = Path(sys.argv[1]), Path(sys.argv[2])
assert Path(medt_monai.__file__).is_relative_to(work / "venv"), f"medt_monai imported from {medt_monai.__file__}"
assert cpu_attention_available(), "the fused CPU attention kernel is not available"
demo = medt_monai.data.make_demo_dataset()
for image in sorted((demo / "test" / "img").glob("*.png"))[:3]:
    shutil.copy(image, images / image.name)
# the transform chains live in the package: get_transforms() with its defaults needs no bundle/ beside the wheel
item = medt_monai.data.get_transforms()({"image": str(image), "label": str(demo / "test" / "labelcol" / image.name)})
assert item["image"].shape == (3, 128, 128), item["image"].shape
print(f"medt_monai from {medt_monai.__file__}; fused CPU kernel built; get_transforms() runs")
EOF
cat "$WORK/kernel.log"
no_fallback "$WORK/kernel.log"

"$PY" -m monai.bundle run --config_file "$BUNDLE/configs/inference.json" --dataset_dir "$WORK/images" \
    >"$WORK/inference.log" 2>&1 || { tail -n 40 "$WORK/inference.log"; fail "inference failed"; }
grep "images in" "$WORK/inference.log"
no_fallback "$WORK/inference.log"
grep -q "Restored all variables from $BUNDLE/models/model.pt" "$WORK/inference.log" || fail "inference did not load the copy's weights"
for image in "$WORK"/images/*.png; do
    mask="$BUNDLE/eval/inference/$(basename "$image" .png)_seg.png"
    [[ -s "$mask" ]] || fail "no mask $mask"
done

"$PY" -m monai.bundle run training --config_file "$BUNDLE/configs/train.json" --max_epochs 1 --img_size 64 \
    >"$WORK/train.log" 2>&1 || { tail -n 40 "$WORK/train.log"; fail "training failed"; }
grep "Epoch\[1\] Complete" "$WORK/train.log" | head -n 1
no_fallback "$WORK/train.log"
for file in models/model.pt models/model_previous.pt eval/checkpoint_latest.pt; do
    [[ -s "$BUNDLE/$file" ]] || fail "training wrote no $BUNDLE/$file"
done
[[ -z "$(ls -A "$WORK/elsewhere")" ]] || fail "files written to the working directory: $(ls -A "$WORK/elsewhere")"
echo "check_wheel_install: OK (wheel installed in a fresh environment, fused kernel used, copied bundle ran from another directory)"
