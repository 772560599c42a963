#!/usr/bin/env bash
# Prepare .gpu/ (git-ignored) for the GPU check of the real PersonaPlex server: everything the
# device machine lacks, since it reaches no network. Run here, then on the device (carry .gpu):
#
#   bash scripts/gpu/prepare.sh
#   bash scripts/gpu/run-personaplex-7b.sh        (on the GPU machine; see that script)
#
# .gpu/whl   wheels for the device's Python (3.12) that its image lacks: this project and its
#            client dependencies, NVIDIA's PersonaPlex server (the pinned commit) and the server
#            dependencies the image does not hold (sphn at the package's own pin, pyloudnorm)
# .gpu/deb   libopus (the client's codec library; opuslib finds it through ldconfig)
# .gpu/model the tiny model folder's tokenizer, config and custom.wav voice (the 7B weights are
#            made at random on the GPU by containers/tiny_personaplex/serve.py --full-size)
# .gpu/data  a small synthesized dataset in the v1.5 layout (espeak-ng speech)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.gpu
py312=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
    --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# pure-Python packages become wheels here; binary ones are fetched for the device's Python
PURE=(websockets==17.4 opuslib==3.0.1 tenacity==9.2.1 docker==7.2.0 spython==0.3.14 pyloudnorm==0.2.0 future==1.0.0)
BINARY=(soundfile==0.14.0 soxr==1.1.0 "sphn>=0.1.4,<0.2")

make -s venv tiny-personaplex
rm -rf "${out}" && mkdir -p "${out}/whl" "${out}/deb" "${out}/model/voices"
.venv/bin/pip download -q --no-deps "${py312[@]}" -d "${out}/whl" "${BINARY[@]}"
.venv/bin/pip wheel -q --no-deps -w "${out}/whl" "${PURE[@]}" .
source containers/personaplex/pin.env
.venv/bin/pip wheel -q --no-deps -w "${out}/whl" ".cache/personaplex-${PERSONAPLEX_COMMIT:0:12}/moshi"
(cd "${out}/deb" && apt-get download libopus0 >/dev/null)
model=.cache/tiny-personaplex/demo
cp "${model}/tokenizer.model" "${model}/config.json" "${model}/tiny_personaplex.json" "${out}/model/"
cp "${model}/voices/custom.wav" "${out}/model/voices/"
.venv/bin/python -m pipeline synth-data --out "${out}/data" --per-task 1
du -sh "${out}" "${out}"/*
