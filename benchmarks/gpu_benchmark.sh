#!/usr/bin/env bash
# GPU variant of the pipeline benchmark, for a machine with an NVIDIA GPU (one prepared
# script: run it as is). Ours uses ONNX Runtime's TensorRT, then CUDA execution provider;
# the reference's MonaiSegInferenceOperator uses torch CUDA when it sees a GPU.
#
# Needs, beside the checkout: a wheelhouse with onnxruntime-gpu (and the lock's wheels)
# at $WHEELHOUSE, because GPU machines here have no network. TensorRT itself is optional:
# without it ONNX Runtime falls back to the CUDA provider (see notes/python-stack.md).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELHOUSE="${WHEELHOUSE:-var/wheelhouse}"
WORK="${WORK:-var/bench-gpu}"
SIZES="${SIZES:-256x256x128,512x512x256}"
REPEATS="${REPEATS:-3}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
VENV="$WORK/runtime-gpu-venv"
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --no-index --find-links "$WHEELHOUSE" -r "$WHEELHOUSE/runtime-requirements.txt"
    "$VENV/bin/pip" uninstall -y onnxruntime-openvino
    "$VENV/bin/pip" install --no-index --find-links "$WHEELHOUSE" onnxruntime-gpu
fi
"$VENV/bin/python" -c "import onnxruntime as o; print('providers:', o.get_available_providers())"
PROVIDERS=$("$VENV/bin/python" - <<'PY'
import onnxruntime as o
wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
print(",".join(p for p in wanted if p in o.get_available_providers()))
PY
)
if [[ -z "$PROVIDERS" ]]; then
    echo "no CUDA/TensorRT provider in onnxruntime-gpu: is the CUDA runtime installed?" >&2
    exit 1
fi
PYTHONPATH="$PWD" .venv/bin/python -m benchmarks.pipeline_benchmark --work "$WORK" \
    --sizes "$SIZES" --repeats "$REPEATS" --ours-python "$VENV/bin/python" \
    --ours-providers "$PROVIDERS"
