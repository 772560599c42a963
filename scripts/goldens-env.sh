#!/usr/bin/env bash
# A throw-away venv that can run Full-Duplex-Bench's own evaluation scripts on a CPU, offline:
# torch (the CPU build, pinned), torchaudio and silero-vad without their dependencies, and what
# the scripts import. torchaudio's PyPI wheel is built for CUDA: its compiled libraries are
# removed, so it imports as pure Python (resample needs nothing else). Usage: VENV SILERO_VERSION
set -euo pipefail
venv="$1"
silero="$2"
if [ -f "$venv/.ready-$silero" ]; then exit 0; fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0 numpy scipy soundfile soxr tqdm packaging
"$venv/bin/pip" install -q --no-deps torchaudio==2.11.1 "silero-vad==$silero"
rm -f "$venv"/lib/python3*/site-packages/torchaudio/lib/*.so
"$venv/bin/python" -c "import torchaudio.functional, silero_vad"
touch "$venv/.ready-$silero"
