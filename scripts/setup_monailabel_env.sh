#!/usr/bin/env bash
# Create (or reuse) the separate virtual environment for MONAI Label 0.8.5 and link it to
# <repo>/.venv-monailabel. Used by tests/test_monailabel.py and by docs/monailabel.md.
#
# Why a separate environment: monailabel 0.8.5 pins numpy<2 (through pydicom-seg), pydicom<3,
# and needs a torchvision built for its torch; the main .venv keeps numpy 2 and the CPU torch.
#
# The environment holds only third-party packages; medt_monai itself is taken from the checkout
# (PYTHONPATH=<repo>, which the test and the documented server command set), so one cached
# environment serves every clone on the machine. It is built in
#   ${MEDT_MONAILABEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/medt-monai}/monailabel-<hash>
# where <hash> is taken from the pins below and the Python version: changing a pin builds a new
# environment (and removes the old one); running the script again with nothing changed only checks
# the imports and re-creates the link (seconds).
#
# Usage: bash scripts/setup_monailabel_env.sh            (from the repository root or anywhere)
#        MEDT_MONAILABEL_REBUILD=1 bash scripts/setup_monailabel_env.sh   (force a rebuild)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${MEDT_MONAILABEL_PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
CACHE="${MEDT_MONAILABEL_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/medt-monai}"
LINK="$ROOT/.venv-monailabel"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# ---------------------------------------------------------------------------------------------
# Pins. torch 2.14.1 + torchvision 0.29.1 come from the machine's local wheel index (pip finds
# them by name); torchvision's compiled ops must match torch, so the two are pinned together.
# monailabel itself is installed with --no-deps: its hard dependency sam2 (SAM2 interactive models,
# switched off with `--conf sam2 false`) would be built from source against a registry torch,
# and monai's mlflow/gdown/lmdb extras are not used by our app.
# Everything else monailabel 0.8.5 declares is installed, with the upper bounds it needs.
# The last block is what our app (monailabel_app/) needs for whole-slide images: OpenSlide (library as a wheel,
# no system package), shapely (polygons) and tifffile (an uploaded region written as a one-level TIFF).
# ---------------------------------------------------------------------------------------------
read -r -d '' REQS <<'EOF' || true
torch==2.14.1
torchvision==0.29.1
monai==1.6.1
pytorch-ignite==0.5.5
numpy<2
nibabel
itk>=5.3
pillow
scikit-image
pyyaml
fire
tensorboard
jsonschema
tqdm
psutil
uvicorn>=0.29.0
pydantic>=2.7.0
pydantic-settings>=2.2.1
python-dotenv>=1.0.1
fastapi>=0.110.2
python-multipart>=0.0.9
httpx>=0.27.0
schedule>=1.2.1
dicomweb-client[gcp]>=0.59.1,<0.60
timeloop>=1.0.2
expiringdict>=1.2.2
expiring_dict>=1.1.0
cachetools>=5.3.3
watchdog>=4.0.0
pydicom>=2.4.4,<3
pydicom-seg>=0.4.1
pynetdicom>=2.0.2,<3
pynrrd>=1.0.0
numpymaxflow>=0.0.7
girder-client>=3.2.3
ninja>=1.11.1.1
einops>=0.7.0
filelock>=3.11.0
passlib>=1.7.4
pyjwt>=2.8.0
bcrypt>=4.1.2
requests>=2.31.0
requests-toolbelt>=1.0.0
urllib3>=2.2.1
scikit-learn
scipy
google-auth>=2.29.0
openslide-python==1.4.7
openslide-bin==4.0.1.2
shapely==2.2.0
tifffile==2026.3.3
EOF
MONAILABEL="monailabel==0.8.5"
# Exact versions (pip freeze of an environment built from the lines above on 2026-11-25); pip
# resolves against these, so a rebuild gets the same environment whatever the registry adds later.
read -r -d '' LOCK <<'EOF' || true
absl-py==2.5.1
annotated-doc==0.0.7
annotated-types==0.8.0
anyio==4.16.0
attrs==26.1.0
bcrypt==5.0.0
cachetools==8.0.2
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.2
click==8.5.1
cloudpickle==3.1.3
cryptography==50.0.2
cuda-bindings==13.5.0
cuda-pathfinder==1.9.0
cuda-toolkit==13.0.3.0
dicomweb-client==0.59.3
diskcache==5.6.3
einops==0.8.2
expiring-dict==1.1.2
expiringdict==1.2.2
fastapi==0.165.0
filelock==4.2.12
fire==0.7.1
fsspec==2026.9.0
girder-client==5.0.21
google-auth==2.63.0
grpcio==1.85.3
h11==0.16.0
httpcore==1.0.9
httpx==0.28.1
idna==3.20
ImageIO==2.38.1
importlib_resources==7.1.0
itk==5.4.7
itk-core==5.4.7
itk-filtering==5.4.7
itk-io==5.4.7
itk-numerics==5.4.7
itk-registration==5.4.7
itk-segmentation==5.4.7
Jinja2==3.1.6
joblib==1.6.0
jsonschema==3.2.0
lazy-loader==0.6
Markdown==3.11.3
MarkupSafe==3.0.4
monai==1.6.1
monailabel==0.8.5
mpmath==1.3.0
narwhals==2.29.0
networkx==3.6.1
nibabel==5.4.2
ninja==1.13.2
numpy==1.26.4
numpymaxflow==0.0.7
nvidia-cublas==13.1.1.3
nvidia-cuda-cupti==13.0.85
nvidia-cuda-nvrtc==13.0.88
nvidia-cuda-runtime==13.0.96
nvidia-cudnn-cu13==9.24.0.43
nvidia-cufft==12.0.0.61
nvidia-cufile==1.15.1.6
nvidia-curand==10.4.0.35
nvidia-cusolver==12.0.4.66
nvidia-cusparse==12.6.3.3
nvidia-cusparselt-cu13==0.8.1
nvidia-nccl-cu13==2.30.7
nvidia-nvjitlink==13.5.37
nvidia-nvshmem-cu13==3.4.5
nvidia-nvtx==13.0.85
openslide-bin==4.0.1.2
openslide-python==1.4.7
opentelemetry-api==1.45.2
packaging==26.3
passlib==1.7.4
pillow==13.0.0
protobuf==7.36.2
psutil==7.2.2
pyasn1==0.6.5
pyasn1_modules==0.4.2
pycparser==3.12
pydantic==2.14.4
pydantic-settings==2.16.3
pydantic_core==2.50.5
pydicom==2.4.5
pydicom-seg==0.4.1
PyJWT==2.15.1
pynetdicom==2.1.1
pynrrd==1.1.3
pyrsistent==0.20.0
python-dotenv==1.2.4
python-multipart==0.0.34
pytorch-ignite==0.5.5
PyYAML==6.0.4
requests==2.34.2
requests-toolbelt==1.0.0
retrying==1.4.2
schedule==1.2.2
scikit-image==0.26.0
scikit-learn==1.9.1
scipy==1.17.1
shapely==2.2.0
simpleitk==2.5.7
six==1.17.0
sortedcontainers==2.4.0
starlette==1.10.0
sympy==1.14.0
tensorboard==2.21.0
tensorboard-data-server==0.7.2
termcolor==3.3.0
threadpoolctl==3.8.0
tifffile==2026.3.3
timeloop==1.0.2
torch==2.14.1
torchvision==0.29.1
tqdm==4.70.1
triton==3.8.0
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
uvicorn==0.54.0
watchdog==7.1.0
Werkzeug==3.1.9
EOF

# the environment's identity: the pins and the interpreter (not the rest of this file)
HASH="$(printf '%s\n' "$REQS" "$LOCK" "$MONAILABEL" "$("$PYTHON" -c 'import sys; print(sys.version)')" | sha256sum | cut -c1-12)"
VENV="$CACHE/monailabel-$HASH"

check() {  # the environment is usable: right versions, and the server's imports work
    "$1/bin/python" - <<'EOF'
import importlib.metadata as md
want = {"monailabel": "0.8.5", "monai": "1.6.1", "torch": "2.14.1", "torchvision": "0.29.1"}
got = {k: md.version(k).split("+")[0] for k in want}
assert got == want, f"versions {got} != {want}"
import torchvision.utils  # noqa: F401  (its compiled ops must load against this torch)
import monailabel.main  # noqa: F401
from monailabel.tasks.infer.bundle import BundleInferTask  # noqa: F401
from monailabel.tasks.train.bundle import BundleTrainTask  # noqa: F401
import openslide, shapely, tifffile  # noqa: F401,E401  (monailabel_app's whole-slide inference)
print("monailabel environment OK:", got)
EOF
}

link() {
    if [ -L "$LINK" ] || [ ! -e "$LINK" ]; then
        ln -sfn "$VENV" "$LINK"
    else
        echo "note: $LINK exists and is not a link; leaving it, the environment is $VENV" >&2
    fi
    echo "MONAI Label environment: $VENV (linked as $LINK)"
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock-$HASH"
flock 9  # two checkouts setting up at once share one build

if [ "${MEDT_MONAILABEL_REBUILD:-0}" != 1 ] && [ -f "$VENV/.complete" ] && check "$VENV"; then
    link
    exit 0
fi

start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
printf '%s\n' "$REQS" > "$VENV/requirements-medt.txt"
printf '%s\n' "$LOCK" > "$VENV/constraints-medt.txt"
# (pip warns about each of the machine's local index folders that lacks a package: noise, filtered)
"$VENV/bin/pip" install -q -r "$VENV/requirements-medt.txt" -c "$VENV/constraints-medt.txt" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"$VENV/bin/pip" install -q --no-deps -c "$VENV/constraints-medt.txt" "$MONAILABEL" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
check "$VENV"
touch "$VENV/.complete"
echo "built in $(( $(date +%s) - start )) s"
link  # before the clean-up below, so that the link never points to a folder being removed
# environments of earlier versions of this script: about 8 GB each (torch's CUDA libraries)
for old in "$CACHE"/monailabel-*; do
    if [ "$old" != "$VENV" ] && [ -d "$old" ]; then rm -rf "$old" "$CACHE/.lock-${old##*/monailabel-}"; fi
done
