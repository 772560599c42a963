#!/usr/bin/env bash
# Create (or refresh) the virtual environment that runs the real upstream Kyutai server
# (PyPI `moshi` 0.2.13, `python -m moshi.server`) on the CPU, separate from the client's venv.
#
#   scripts/setup-server-env.sh [VENV_DIR]      (default: .venv-server in the repository root)
#
# Idempotent: an existing venv is reused and pip only installs what is missing.
# torch is pinned to 2.13.0 and installed first: on the development and CI machines pip takes
# that CPU build from local disk. moshi itself pins torch<2.10 (and would pull a multi-GB CUDA
# build), so it is installed with --no-deps and its run-time dependencies are listed here by hand.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_dir="${1:-${repo_root}/.venv-server}"
python_bin="${PYTHON:-python3}"

TORCH_SPEC="torch==2.13.0"
MOSHI_SPEC="moshi==0.2.13"
# Everything `import moshi.server` (and the model loaders it uses) needs at run time.
DEPS=(
    "numpy>=1.26,<2.3"
    "safetensors>=0.4.0,<0.8"
    "huggingface-hub>=0.24,<1.0"
    "einops>=0.7,<0.9"
    "sentencepiece>=0.2,<0.3"
    "sphn>=0.2,<0.3"
    "aiohttp>=3.10.5,<3.12"
    "tqdm"
)

log() { printf '[setup-server-env] %s\n' "$*"; }

start=$(date +%s)

if [[ -x "${venv_dir}/bin/python" ]]; then
    log "reusing venv ${venv_dir}"
else
    log "creating venv ${venv_dir} with $(command -v "${python_bin}") ($("${python_bin}" --version 2>&1))"
    "${python_bin}" -m venv "${venv_dir}"
fi
py="${venv_dir}/bin/python"
pip=("${py}" -m pip --disable-pip-version-check --quiet)

log "installing ${TORCH_SPEC} (CPU build from local disk where available)"
"${pip[@]}" install "${TORCH_SPEC}"

log "installing ${MOSHI_SPEC} without its declared dependencies"
"${pip[@]}" install --no-deps "${MOSHI_SPEC}"

log "installing moshi's run-time dependencies: ${DEPS[*]}"
"${pip[@]}" install "${DEPS[@]}"

log "checking the installation"
# `import moshi.server` would start a server (the module body calls main()); `--help` runs all
# of the module's imports and exits before loading anything.
"${py}" -m moshi.server --help >/dev/null
"${py}" - <<'EOF'
import importlib.metadata as md
import sys

import torch

version = torch.__version__
cuda = torch.version.cuda
print(f"[setup-server-env] torch {version} (CUDA build: {cuda}), moshi {md.version('moshi')}")
if version.split("+")[0] != "2.13.0":
    sys.exit(f"[setup-server-env] ERROR: expected torch 2.13.0, got {version}")
nvidia = sorted(
    d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith("nvidia-")
)
if (cuda is not None or nvidia) and not torch.cuda.is_available():
    # On a machine without a GPU this means an unpinned torch slipped in (several GB).
    sys.exit(
        f"[setup-server-env] ERROR: CUDA build of torch ({cuda}) or CUDA packages "
        f"({', '.join(nvidia) or 'none'}) installed on a machine without a GPU"
    )
EOF

size=$(du -sh "${venv_dir}" | cut -f1)
log "done in $(( $(date +%s) - start )) s; ${venv_dir} is ${size}"
log "server python: ${py}"
