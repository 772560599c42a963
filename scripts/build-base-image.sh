#!/usr/bin/env bash
# Build a Debian bookworm base image for Docker WITHOUT any container registry.
#
#   scripts/build-base-image.sh [TAG]          (default tag: fdb-base:bookworm)
#
# How: `debootstrap --variant=minbase --include=<python3, venv, pip, libopus0, ...> bookworm DIR
# MIRROR` (MIRROR = the Debian mirror this machine's apt sources use), then
# `tar -C DIR -c . | docker import - TAG`. It is the base of the CPU variant of
# containers/Dockerfile (`--build-arg BASE_IMAGE=fdb-base:bookworm`).
#
# Idempotent and cached:
#   - nothing is done if the image TAG already exists (FORCE=1 rebuilds it);
#   - the root filesystem is kept as a tarball under .cache/base-image/, keyed by the package
#     list and the mirror, so a rebuild (e.g. on a fresh Docker data root) is only an import.
#
# Needs root (debootstrap), a running engine (scripts/docker-engine.sh start) and apt access.
# Environment: DEBIAN_MIRROR (override the mirror), BASE_CACHE_DIR (override the cache folder),
# FORCE=1 (rebuild even if the image exists), KEEP_ROOTFS_CACHE=0 (do not keep the tarball),
# ROOTFS_ONLY=1 (no Docker: make the tarball only and print its path on stdout - the base of the
# CPU SIF, see scripts/build-cpu-sif.sh).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${1:-fdb-base:bookworm}"
suite="bookworm"
cache_dir="${BASE_CACHE_DIR:-${repo_root}/.cache/base-image}"
# python3-venv: the Dockerfile makes a venv; libopus0: the Opus codec (sphn bundles its own, but
# opuslib-based clients and checks need the system one); ca-certificates: TLS for pip/HF in
# images that do have network.
packages="python3,python3-venv,python3-pip,libopus0,ca-certificates"

log() { printf '[build-base-image] %s\n' "$*" >&2; }
die() { printf '[build-base-image] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t_start=$(now)

rootfs_only="${ROOTFS_ONLY:-0}"
if [[ "${rootfs_only}" != 1 ]]; then
    command -v docker >/dev/null || die "no docker client; run scripts/docker-engine.sh start"
    docker info >/dev/null 2>&1 || die "no Docker engine answers; run scripts/docker-engine.sh start"
fi

if [[ "${rootfs_only}" != 1 && "${FORCE:-0}" != 1 ]] && docker image inspect "${tag}" >/dev/null 2>&1; then
    log "image ${tag} exists ($(docker image inspect -f '{{.Size}}' "${tag}" | numfmt --to=iec)); nothing to do (FORCE=1 rebuilds)"
    exit 0
fi

debian_mirror() {
    # The mirror apt uses for the plain `bookworm` suite of the Debian archive.
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
        printf '%s\n' "${DEBIAN_MIRROR}"
        return
    fi
    # shellcheck disable=SC2016  # apt's own $(FIELD) placeholders, not shell expansions
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(ORIGIN) $(TARGET_OF)' 2>/dev/null |
        awk -v s="${suite}" '$2 == s && $3 == "Debian" && $4 == "deb" { print $1; exit }'
}

mirror="$(debian_mirror)"
if [[ -z "${mirror}" ]]; then
    # apt may not have fetched its lists yet.
    apt-get update -qq >/dev/null 2>&1 || true
    mirror="$(debian_mirror)"
fi
[[ -n "${mirror}" ]] || die "cannot find a Debian ${suite} mirror in apt's sources; set DEBIAN_MIRROR"

key="$(printf '%s|%s|%s|%s' "${suite}" "${packages}" "${mirror}" "$(dpkg --print-architecture)" | sha256sum | cut -c1-12)"
tarball="${cache_dir}/${suite}-minbase-${key}.tar"
mkdir -p "${cache_dir}"

exec 9>"${cache_dir}/.lock"
flock 9  # two concurrent builds: the second waits, then finds the tarball (or the image)

if [[ -s "${tarball}" ]]; then
    log "reusing cached root filesystem ${tarball} ($(du -h "${tarball}" | cut -f1))"
else
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap"
        t0=$(now)
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        log "debootstrap installed in $(since "${t0}") s"
    fi
    rootfs="${cache_dir}/rootfs-${key}.tmp"
    rm -rf "${rootfs}"
    mkdir -p "${rootfs}"
    log "debootstrap --variant=minbase ${suite} from ${mirror} with ${packages}"
    t0=$(now)
    if ! debootstrap --variant=minbase --include="${packages}" "${suite}" "${rootfs}" "${mirror}" \
        >"${cache_dir}/debootstrap.log" 2>&1; then
        tail -n 30 "${cache_dir}/debootstrap.log" >&2
        [[ -f "${rootfs}/debootstrap/debootstrap.log" ]] && tail -n 30 "${rootfs}/debootstrap/debootstrap.log" >&2
        rm -rf "${rootfs}"
        die "debootstrap failed (log: ${cache_dir}/debootstrap.log)"
    fi
    log "debootstrap done in $(since "${t0}") s"
    # Slim it: downloaded .debs, apt lists, docs, man pages, locales other than C.
    rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/* \
        "${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/* "${rootfs}"/usr/share/info/* \
        "${rootfs}"/var/log/*.log "${rootfs}"/tmp/*
    # Keep the same sources as debootstrap used, so `apt-get update` works inside the image.
    printf 'deb %s %s main\n' "${mirror}" "${suite}" >"${rootfs}/etc/apt/sources.list"
    t0=$(now)
    tar --numeric-owner -C "${rootfs}" -cf "${tarball}.tmp" .
    mv "${tarball}.tmp" "${tarball}"
    rm -rf "${rootfs}"
    log "root filesystem archived in $(since "${t0}") s: ${tarball} ($(du -h "${tarball}" | cut -f1))"
fi

if [[ "${rootfs_only}" == 1 ]]; then
    printf '%s\n' "${tarball}"
    exit 0
fi

t0=$(now)
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase --include=${packages} ${suite} ${mirror}" \
    "${tarball}" "${tag}" >/dev/null
log "imported ${tag} in $(since "${t0}") s ($(docker image inspect -f '{{.Size}}' "${tag}" | numfmt --to=iec))"

if [[ "${KEEP_ROOTFS_CACHE:-1}" == 0 ]]; then
    rm -f "${tarball}"
fi
log "done in $(since "${t_start}") s"
