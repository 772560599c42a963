#!/usr/bin/env bash
# The GPU check of NVIDIA's PersonaPlex server: the real 7B LM and Mimi configuration with random
# weights (no weights can be downloaded where the GPU is), the local runtime, the few samples of
# .gpu/data unpaced and then in real time. It records frames/s per session, the real-time
# factor, the p50/p95 frame lag, the peak GPU memory and the card, in $OUT/summary.md.
#
# Here:  bash scripts/gpu/prepare.sh
# Then, with the device tool (about 5 minutes; carry .gpu):
#   run(command="bash scripts/gpu/run-personaplex-7b.sh", carry=[".gpu"], timeout_s=540)
#
# The device image has Python 3.12 with PyTorch/CUDA, aiohttp, huggingface_hub, safetensors,
# sentencepiece, einops, numpy, scipy; .gpu/whl brings the rest (installed with --no-deps).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/fdb-gpu-check}"
mkdir -p "${OUT}"
test -d .gpu/whl || { echo "no .gpu/: run scripts/gpu/prepare.sh here and carry .gpu" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
for f in .gpu/deb/*.deb; do dpkg -x "$f" /; done
ldconfig
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "${OUT}/card.txt"
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits -lms 500 \
    > "${OUT}/gpu-trace.csv" &
trace=$!
trap 'kill ${trace} 2>/dev/null || true' EXIT
launcher="python3 containers/tiny_personaplex/serve.py --tiny-model .gpu/model --full-size"
for pace in none realtime; do
    python3 -m pipeline bench --root .gpu/data --runtime local --gpus 0 --profile personaplex \
        --voice-prompt .gpu/model/voices/custom.wav --server-command "${launcher}" \
        --server-arg=--moshi-weight=random --hf-cache /tmp/hf --port 0 --pace "${pace}" \
        --overwrite --startup-timeout 900 --run-dir "${OUT}/run-${pace}" || true
    cp "${OUT}/run-${pace}"/server-0.log "${OUT}/server-${pace}.log" 2>/dev/null || true
done
python3 scripts/gpu/summarize.py "${OUT}" | tee "${OUT}/summary.md"
