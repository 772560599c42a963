#!/usr/bin/env bash
# Create (or refresh) the virtual environment that runs the `asr` stage of `pipeline evaluate`:
# NVIDIA NeMo (the ASR toolkit of Full-Duplex-Bench's own ASR script) on the CPU torch, separate
# from the client's venv, which stays free of torch and NeMo.
#
#   scripts/setup-asr-env.sh [VENV_DIR]      (default: .venv-asr in the repository root)
#
# Idempotent: an existing venv is reused and pip only installs what is missing.
# torch is pinned and installed first (on the development and CI machines pip takes the CPU build
# of 2.13.0 from local disk); NeMo then resolves against a constraints file that holds torch at
# that version, so no multi-GB CUDA build can replace it.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_dir="${1:-${repo_root}/.venv-asr}"
python_bin="${PYTHON:-python3}"

# The pins (the Makefile's .installed stamp depends on this file).
TORCH_SPEC="torch==2.13.0"
NEMO_SPEC="nemo_toolkit[asr]==2.7.3"

log() { printf '[setup-asr-env] %s\n' "$*"; }
start=$(date +%s)

if [[ -x "${venv_dir}/bin/python" ]]; then
    log "reusing venv ${venv_dir}"
else
    log "creating venv ${venv_dir} with $("${python_bin}" --version 2>&1)"
    "${python_bin}" -m venv "${venv_dir}"
fi
py="${venv_dir}/bin/python"
pip=("${py}" -m pip --disable-pip-version-check --quiet)
constraints="${venv_dir}/asr-constraints.txt"
printf '%s\n' "${TORCH_SPEC}" >"${constraints}"

log "installing ${TORCH_SPEC} (CPU build from local disk where available)"
"${pip[@]}" install "${TORCH_SPEC}"
log "installing ${NEMO_SPEC} (torch held by ${constraints})"
"${pip[@]}" install -c "${constraints}" "${NEMO_SPEC}"

log "checking the installation"
"${py}" - <<'PY'
import importlib.metadata as md
import sys

import torch
from nemo.collections.asr.models import EncDecRNNTBPEModel  # noqa: F401

print(f"[setup-asr-env] torch {torch.__version__}, nemo_toolkit {md.version('nemo_toolkit')}")
if torch.__version__.split("+")[0] != "2.13.0":
    sys.exit(f"[setup-asr-env] ERROR: expected torch 2.13.0, got {torch.__version__}")
if torch.version.cuda is not None and not torch.cuda.is_available():
    sys.exit("[setup-asr-env] ERROR: a CUDA build of torch on a machine without a GPU")
PY

size=$(du -sh "${venv_dir}" | cut -f1)
log "done in $(( $(date +%s) - start )) s; ${venv_dir} is ${size}"
