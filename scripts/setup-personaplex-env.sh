#!/usr/bin/env bash
# Create (or refresh) the virtual environment that runs NVIDIA's PersonaPlex server
# (`moshi-personaplex`, imported as `moshi`: hence a venv of its own) on the CPU, for the tests,
# the demo and the CPU image.
#
#   scripts/setup-personaplex-env.sh [VENV_DIR]      (default: .venv-personaplex)
#
# Source: the commit pinned in containers/personaplex/pin.env - from ../shared/vendor/ when that
# folder holds its archive (checked against the pinned sha256), else from GitHub.
# Pins: the package pins torch<2.5; only the CPU torch 2.13.0 installs quickly here, so torch is
# the one relaxed pin (installed first, then the package with --no-deps, then its other
# run-time dependencies at its own pins). sounddevice (a client-side dependency) is left out.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_dir="${1:-${repo_root}/.venv-personaplex}"
python_bin="${PYTHON:-python3}"
# shellcheck source=../containers/personaplex/pin.env
source "${repo_root}/containers/personaplex/pin.env"
archive="${repo_root}/../shared/vendor/personaplex-${PERSONAPLEX_COMMIT}.tar.gz"
src_dir="${repo_root}/.cache/personaplex-${PERSONAPLEX_COMMIT:0:12}"

# relaxed from <2.5: the CPU build on these machines' disk
TORCH_SPEC="torch==2.13.0"
# moshi-personaplex's own pins, less sounddevice and torch; pyloudnorm for custom .wav voices
# (imported lazily by the server). scripts/fetch-wheels.sh reads these lines.
DEPS=(
    "numpy>=1.26,<2.2"
    "safetensors>=0.4.0,<0.5"
    "huggingface-hub>=0.24,<0.25"
    "einops==0.7"
    "sentencepiece==0.2"
    "sphn>=0.1.4,<0.2"
    "aiohttp>=3.10.5,<3.11"
    "pyloudnorm"
)

log() { printf '[setup-personaplex-env] %s\n' "$*"; }
start=$(date +%s)

if [[ -f "${archive}" ]]; then
    got=$(sha256sum "${archive}" | cut -d' ' -f1)
    if [[ "${got}" != "${PERSONAPLEX_ARCHIVE_SHA256}" ]]; then
        log "ERROR: ${archive} has sha256 ${got}, expected ${PERSONAPLEX_ARCHIVE_SHA256}"
        exit 1
    fi
    if [[ ! -f "${src_dir}/moshi/pyproject.toml" ]]; then
        mkdir -p "${src_dir}"
        tar -xzf "${archive}" -C "${src_dir}" --strip-components=1
    fi
    package="${src_dir}/moshi"
    log "PersonaPlex ${PERSONAPLEX_COMMIT:0:12} from the vendored archive (sha256 checked)"
else
    package="moshi-personaplex @ git+${PERSONAPLEX_GIT}@${PERSONAPLEX_COMMIT}#subdirectory=moshi"
    log "PersonaPlex ${PERSONAPLEX_COMMIT:0:12} from GitHub"
fi

if [[ -x "${venv_dir}/bin/python" ]]; then
    log "reusing venv ${venv_dir}"
else
    log "creating venv ${venv_dir}"
    "${python_bin}" -m venv "${venv_dir}"
fi
py="${venv_dir}/bin/python"
pip=("${py}" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install "${TORCH_SPEC}"
"${pip[@]}" install --no-deps "${package}"
"${pip[@]}" install "${DEPS[@]}"

"${py}" -m moshi.server --help >/dev/null
"${py}" - <<'PY'
import importlib.metadata as md
import sys

import torch

print(f"[setup-personaplex-env] torch {torch.__version__}, moshi-personaplex {md.version('moshi-personaplex')}")
if torch.version.cuda is not None and not torch.cuda.is_available():
    sys.exit("[setup-personaplex-env] ERROR: a CUDA build of torch on a machine without a GPU")
PY
log "done in $(( $(date +%s) - start )) s; ${venv_dir} is $(du -sh "${venv_dir}" | cut -f1)"
