#!/usr/bin/env bash
# Build the CPU variant of apptainer.def - with no registry and no network but apt's mirror:
#
#   scripts/build-cpu-sif.sh [SIF] [PROFILE]     (defaults: .cache/apptainer/cpu-personaplex.sif,
#                                                 personaplex; PROFILE=moshi: upstream moshi)
#
# The same pieces as the Docker CPU variant, reused: the debootstrap root filesystem of
# scripts/build-base-image.sh (ROOTFS_ONLY=1, no Docker needed) unpacked once as a sandbox
# folder (BOOTSTRAP=localimage), the wheels and build arguments of scripts/fetch-wheels.sh
# (SERVER=PROFILE), and apptainer.def itself. apptainer is the one on PATH, else the one
# scripts/apptainer-setup.sh prepares.
#
# Idempotent: the SIF is rebuilt only when an input changed (the recipe, this project's code,
# the tiny launchers, the wheels, the build arguments): their digest is kept in SIF.inputs.
# Prints the SIF's path on stdout. FORCE=1 rebuilds.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${2:-personaplex}"
sif="${1:-${repo_root}/.cache/apptainer/cpu-${profile}.sif}"
case "${profile}" in
    personaplex) args_file="personaplex-cpu-build-args.txt" pins="scripts/setup-personaplex-env.sh" ;;
    moshi) args_file="cpu-build-args.txt" pins="scripts/setup-server-env.sh" ;;
    *) printf 'PROFILE must be personaplex or moshi, not %s\n' "${profile}" >&2; exit 2 ;;
esac
wheels="${repo_root}/containers/wheels"
# zstd at a low level: mksquashfs's default (gzip) takes most of the build on 2 cores
squash_args="${SIF_MKSQUASHFS_ARGS:--comp zstd -Xcompression-level 3}"

log() { printf '[build-cpu-sif] %s\n' "$*" >&2; }
die() { printf '[build-cpu-sif] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

main() {  # (one function: bash has read all of it before it runs, so an edit cannot break a build)
t_start=$(now)
cd "${repo_root}"
mkdir -p "$(dirname "${sif}")" .cache/apptainer
sif="$(cd "$(dirname "${sif}")" && pwd)/$(basename "${sif}")"
exec 9>"${repo_root}/.cache/apptainer/.build.lock"
flock -w 1800 9 || die "another build holds .cache/apptainer/.build.lock"

apptainer_bin="$(command -v apptainer || command -v singularity || true)"
if [[ -z "${apptainer_bin}" ]]; then
    bash scripts/apptainer-setup.sh
    bin_dir="$(bash scripts/apptainer-setup.sh --bin)"
    apptainer_bin="${bin_dir}/apptainer"
fi

# A complete fetch for these pins leaves a stamp (the one tests/docker_support.py uses too).
stamp="${wheels}/.fetched-${profile}-$(cat "${pins}" scripts/fetch-wheels.sh pyproject.toml |
    sha256sum | cut -c1-16)"
if [[ ! -f "${stamp}" || ! -s "${wheels}/${args_file}" ]]; then
    SERVER="${profile}" bash scripts/fetch-wheels.sh >&2
    [[ -s "${wheels}/${args_file}" ]] || die "fetch-wheels.sh wrote no ${wheels}/${args_file}"
    rm -f "${wheels}/.fetched-${profile}-"*
    touch "${stamp}"
fi

tarball="$(ROOTFS_ONLY=1 bash scripts/build-base-image.sh)"
[[ -s "${tarball}" ]] || die "build-base-image.sh gave no root filesystem"
base="${repo_root}/.cache/apptainer/base-$(basename "${tarball}" .tar)"
if [[ ! -f "${base}/.complete" ]]; then
    rm -rf "${base}" "${base}.tmp"
    mkdir -p "${base}.tmp"
    tar --numeric-owner -C "${base}.tmp" -xf "${tarball}"
    touch "${base}.tmp/.complete"
    mv "${base}.tmp" "${base}"
    log "base sandbox ${base} unpacked"
fi

inputs() {  # (README.md is copied in as the package's readme: a docs change needs no rebuild)
    sha256sum apptainer.def pyproject.toml "${wheels}/${args_file}" "${tarball}"
    find pipeline containers/tiny_moshi containers/tiny_personaplex -type f \
        ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
    find "${wheels}" -maxdepth 1 -name '*.whl' -printf '%f %s\n' | sort
    printf 'BOOTSTRAP=localimage BASE_IMAGE=%s mksquashfs %s\n' "${base}" "${squash_args}"
}
digest="$(inputs | sha256sum | cut -d' ' -f1)"
if [[ "${FORCE:-0}" != 1 && -s "${sif}" && "$(cat "${sif}.inputs" 2>/dev/null)" == "${digest}" ]]; then
    log "${sif} is up to date"
    printf '%s\n' "${sif}"
    exit 0
fi

args=(--build-arg-file "${wheels}/${args_file}" --build-arg BOOTSTRAP=localimage
    --build-arg "BASE_IMAGE=${base}" --mksquashfs-args "${squash_args}")
log "apptainer build ${sif} (${profile}, offline; a few minutes on 2 cores)"
t0=$(now)
rm -f "${sif}.inputs" "${sif}.tmp"
"${apptainer_bin}" build --force "${args[@]}" "${sif}.tmp" apptainer.def >&2 ||
    die "apptainer build failed (above)"
mv "${sif}.tmp" "${sif}"
printf '%s\n' "${digest}" >"${sif}.inputs"
log "built ${sif} in $(since "${t0}") s ($(du -h "${sif}" | cut -f1)); all done in $(since "${t_start}") s"
printf '%s\n' "${sif}"
}

main
exit
