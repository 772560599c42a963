#!/usr/bin/env bash
# Download every wheel the CPU variant of containers/Dockerfile needs, so the image builds with
# no network at all (`--build-arg OFFLINE=1`: pip runs with --no-index --find-links).
#
#   scripts/fetch-wheels.sh [DEST]      (default: containers/wheels, the Docker build context's
#                                        wheel folder; git-ignored except .keep)
#
# What: torch (CPU build; on the development/CI machines pip takes it from /opt/wheels), the
# upstream Kyutai server package and its run-time dependencies - the same pins as
# scripts/setup-server-env.sh, read from that script - plus pyloudnorm (custom WAV voices).
# moshi 0.2.13 pins torch<2.10, so like the setup script it is fetched with --no-deps and its
# dependencies are listed explicitly; the Dockerfile installs it the same way (SERVER_DEPS).
#
# Wheels only (--only-binary=:all:), for the image's interpreter: CPython ${TARGET_PY:-3.11}
# (Debian bookworm) on x86_64 with glibc 2.36, whatever python runs this script.
# Also this project's own run-time dependencies (apptainer.def installs the runner in the SIF).
# Writes DEST/cpu-build-args.txt (every --build-arg of the CPU variant, one NAME=VALUE a line).
# Idempotent: files already in DEST are not downloaded again.
#
# SERVER=personaplex: the PersonaPlex variant instead - the pins of
# scripts/setup-personaplex-env.sh, the package built into a wheel from the same source that
# script installs (the vendored archive, sha256 checked, or the pinned GitHub commit), and
# DEST/personaplex-cpu-build-args.txt.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${repo_root}/containers/wheels}"
server="${SERVER:-moshi}"
case "${server}" in
    moshi) setup="${repo_root}/scripts/setup-server-env.sh"; args_file="cpu-build-args.txt"
           launcher="/opt/tiny_moshi/serve.py" ;;
    personaplex) setup="${repo_root}/scripts/setup-personaplex-env.sh"
                 args_file="personaplex-cpu-build-args.txt"
                 launcher="/opt/tiny_personaplex/serve.py" ;;
    *) printf 'SERVER must be moshi or personaplex\n' >&2; exit 2 ;;
esac
python_bin="${PYTHON:-python3}"
target_py="${TARGET_PY:-3.11}"
extra_packages=("pyloudnorm>=0.1.1")

log() { printf '[fetch-wheels] %s\n' "$*"; }
die() { printf '[fetch-wheels] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[[ -f "${setup}" ]] || die "missing ${setup} (it holds the server pins)"
torch_spec="$(sed -n 's/^TORCH_SPEC="\(.*\)"[[:space:]]*$/\1/p' "${setup}")"
moshi_spec="$(sed -n 's/^MOSHI_SPEC="\(.*\)"[[:space:]]*$/\1/p' "${setup}")"
if [[ "${server}" == personaplex ]]; then moshi_spec="moshi-personaplex"; fi
mapfile -t deps < <(sed -n '/^DEPS=(/,/^)/p' "${setup}" | sed -n 's/^[[:space:]]*"\([^"]*\)"[[:space:]]*$/\1/p')
[[ -n "${torch_spec}" && -n "${moshi_spec}" && ${#deps[@]} -gt 0 ]] ||
    die "cannot read TORCH_SPEC, MOSHI_SPEC and DEPS=( ... ) from ${setup}"

# The image's platform: pip does not widen a manylinux_2_N tag to older glibc versions by
# itself, so list them all (bookworm has glibc 2.36).
platforms=()
for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)

pip_download() {
    "${python_bin}" -m pip --disable-pip-version-check download --dest "${dest}" \
        --only-binary=:all: --implementation cp --python-version "${target_py}" "${platforms[@]}" \
        --progress-bar off --quiet "$@"
}

mkdir -p "${dest}"
t_start=$(now)

log "${torch_spec} (and its dependencies) into ${dest}"
t0=$(now)
pip_download "${torch_spec}"
torch_wheel="$(find "${dest}" -maxdepth 1 -name 'torch-*.whl' -print -quit)"
[[ -n "${torch_wheel}" ]] || die "no torch wheel in ${dest}"
if [[ -n "$(find "${dest}" -maxdepth 1 -name 'nvidia_*' -print -quit)" ]]; then
    die "CUDA wheels (nvidia_*) were downloaded: ${torch_spec} resolved to a CUDA build of torch"
fi
log "torch done in $(since "${t0}") s"

log "${moshi_spec} without its declared dependencies (it pins an older torch)"
t0=$(now)
if [[ "${server}" == personaplex ]]; then
    # not on PyPI: a wheel built from the source setup-personaplex-env.sh installs
    source "${repo_root}/containers/personaplex/pin.env"
    archive="${repo_root}/../shared/vendor/personaplex-${PERSONAPLEX_COMMIT}.tar.gz"
    if [[ -f "${archive}" ]]; then
        [[ "$(sha256sum "${archive}" | cut -d' ' -f1)" == "${PERSONAPLEX_ARCHIVE_SHA256}" ]] ||
            die "${archive} does not have the pinned sha256"
        src="$(mktemp -d)"
        tar -xzf "${archive}" -C "${src}" --strip-components=1
        "${python_bin}" -m pip --disable-pip-version-check wheel --quiet --no-deps \
            --wheel-dir "${dest}" "${src}/moshi"
        rm -rf "${src}"
    else
        "${python_bin}" -m pip --disable-pip-version-check wheel --quiet --no-deps \
            --wheel-dir "${dest}" \
            "moshi-personaplex @ git+${PERSONAPLEX_GIT}@${PERSONAPLEX_COMMIT}#subdirectory=moshi"
    fi
else
    pip_download --no-deps "${moshi_spec}"
fi
log "its run-time dependencies and ${extra_packages[*]}: ${deps[*]}"
pip_download "${deps[@]}" "${extra_packages[@]}"
log "server packages done in $(since "${t0}") s"

# The SIF (apptainer.def) holds this project too: its run-time dependencies and its build
# backend, read from pyproject.toml. A dependency published as a source archive only (opuslib)
# is built into a wheel here (pure Python).
log "this project's run-time dependencies and build backend (the SIF holds the runner too)"
t0=$(now)
mapfile -t project_deps < <("${python_bin}" - "${repo_root}/pyproject.toml" <<'PY'
import sys, tomllib
doc = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(doc["project"]["dependencies"] + doc["build-system"]["requires"]))
PY
)
[[ ${#project_deps[@]} -gt 0 ]] || die "cannot read the dependencies from pyproject.toml"
if ! pip_download --find-links "${dest}" "${project_deps[@]}" 2>/dev/null; then
    for req in "${project_deps[@]}"; do
        if ! pip_download --no-deps "${req}" 2>/dev/null; then
            "${python_bin}" -m pip --disable-pip-version-check wheel --quiet --no-deps \
                --wheel-dir "${dest}" "${req}"
        fi
    done
    pip_download --find-links "${dest}" "${project_deps[@]}"
fi
log "project dependencies done in $(since "${t0}") s"

{
    printf 'BASE_IMAGE=%s\n' "fdb-base:bookworm"
    printf 'TORCH_SPEC=%s\n' "${torch_spec}"
    printf 'SERVER_PACKAGE=%s\n' "${moshi_spec}"
    printf 'SERVER_DEPS=%s\n' "${deps[*]}"
    printf 'SERVER_LAUNCHER=%s\n' "${launcher}"
    printf 'OFFLINE=%s\n' 1
} >"${dest}/${args_file}"

count=$(find "${dest}" -maxdepth 1 -name '*.whl' | wc -l)
log "done in $(since "${t_start}") s: ${count} wheels, $(du -sh --exclude=.keep "${dest}" | cut -f1) in ${dest}"
log "build the CPU image with:"
log "  docker build -f containers/Dockerfile -t fdb-server:cpu-test \\"
while IFS= read -r line; do
    log "    --build-arg '${line}' \\"
done <"${dest}/${args_file}"
log "    containers"
