#!/usr/bin/env bash
# Make a real `apptainer` usable on this machine, for the tests, the demo and the CPU SIF.
#
#   scripts/apptainer-setup.sh          prepare it (idempotent; seconds when done already)
#   scripts/apptainer-setup.sh --bin    print the folder to put on PATH ("" when the system's own
#                                       apptainer/singularity is used)
#
# A system `apptainer` or `singularity` (an HPC node, `module load apptainer`) is always used as
# it is: nothing is installed. Otherwise (Debian bookworm has no Apptainer, PyPI neither):
#   1. debootstrap a Debian sid root with apptainer 1.4.x, squashfuse, fuse2fs, uidmap,
#      gocryptfs and ca-certificates (sid's glibc is newer than the host's, so the programs run
#      only inside it) into .cache/apptainer/sid-root (FDB_APPTAINER_ROOT overrides it);
#   2. make .cache/apptainer/bin/{apptainer,singularity}, links to scripts/apptainer-in-sid.sh,
#      which enters that root (private mount namespace, pivot_root, the host's folders bound at
#      their own paths, the host's network) and runs the real apptainer there.
# The Makefile puts .cache/apptainer/bin at the END of PATH, so a system apptainer still wins;
# spython calls `singularity`, hence the second link.
#
# Needs root (debootstrap, mount namespaces) and apt access to a Debian mirror (DEBIAN_MIRROR
# overrides the one apt uses). Measured here: ~70 s and ~400 MB the first time.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state_dir="${repo_root}/.cache/apptainer"
bin_dir="${state_dir}/bin"
root="${FDB_APPTAINER_ROOT:-${state_dir}/sid-root}"
packages="apptainer,squashfuse,fuse2fs,uidmap,gocryptfs,ca-certificates"

log() { printf '[apptainer-setup] %s\n' "$*" >&2; }
die() { printf '[apptainer-setup] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

system_runtime() {
    # the first apptainer/singularity on PATH that is not one of our links
    local name path
    for name in apptainer singularity; do
        while IFS= read -r path; do
            [[ "$(readlink -f "${path}")" == "${repo_root}/scripts/apptainer-in-sid.sh" ]] && continue
            printf '%s\n' "${path}"
            return 0
        done < <(type -ap "${name}")
    done
    return 1
}

if [[ "${1:-}" == --bin ]]; then
    if system_runtime >/dev/null; then echo ""; else echo "${bin_dir}"; fi
    exit 0
fi

t_start=$(now)
if found="$(system_runtime)"; then
    log "using this machine's own ${found} ($("${found}" --version 2>&1 | head -n 1)); nothing to install"
    rm -f "${bin_dir}/apptainer" "${bin_dir}/singularity"  # so that no stale link shadows it
    exit 0
fi
[[ "$(id -u)" == 0 ]] || die "no apptainer/singularity here and not root: install Apptainer (https://apptainer.org/docs/admin/main/installation.html) or run this as root"

mkdir -p "${state_dir}"
exec 9>"${state_dir}/.lock"
flock -w 900 9 || die "another apptainer-setup.sh holds ${state_dir}/.lock"

stamp="${root}/.fdb-packages"
if [[ -x "${root}/usr/bin/apptainer" && "$(cat "${stamp}" 2>/dev/null)" == "${packages}" ]]; then
    log "sid root ${root} is ready"
else
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    mirror="${DEBIAN_MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(ORIGIN)' 2>/dev/null |
        awk '$2 == "Debian" && $1 !~ /security/ { print $1; exit }')}"
    mirror="${mirror:-http://deb.debian.org/debian/}"
    tmp="${root}.tmp"
    rm -rf "${tmp}"
    mkdir -p "${tmp}"
    log "debootstrap --variant=minbase sid from ${mirror} with ${packages} (about a minute)"
    t0=$(now)
    if ! debootstrap --variant=minbase --include="${packages}" sid "${tmp}" "${mirror}" \
        >"${state_dir}/debootstrap.log" 2>&1; then
        tail -n 30 "${state_dir}/debootstrap.log" >&2
        die "debootstrap failed (log: ${state_dir}/debootstrap.log)"
    fi
    rm -rf "${tmp}"/var/cache/apt/archives/*.deb "${tmp}"/var/lib/apt/lists/*
    printf '%s\n' "${packages}" >"${tmp}/.fdb-packages"
    rm -rf "${root}"
    mv "${tmp}" "${root}"
    log "sid root made in $(since "${t0}") s ($(du -sh "${root}" | cut -f1))"
fi

mkdir -p "${bin_dir}"
ln -sfn "${repo_root}/scripts/apptainer-in-sid.sh" "${bin_dir}/apptainer"
ln -sfn apptainer "${bin_dir}/singularity"
version="$(FDB_APPTAINER_ROOT="${root}" "${bin_dir}/apptainer" --version)" ||
    die "the apptainer in ${root} does not run (see above)"
log "${version} ready in $(since "${t_start}") s: put ${bin_dir} on PATH (the Makefile does)"
