#!/bin/sh
# `apptainer` (and `singularity`) for machines whose distribution has none (Debian bookworm):
# the real Apptainer of a Debian sid root made by scripts/apptainer-setup.sh, run in a private
# mount namespace whose root is that sid root (pivot_root; apptainer refuses a plain chroot).
#
# What the host shares with it:
#   * every top-level folder of the host that is not part of its OS (/home, /root, /tmp, /mnt,
#     /srv, /opt, /data, ... - all but /bin /boot /dev /etc /lib* /proc /run /sbin /sys /usr
#     /var) at the same path, plus /var/tmp and the current folder wherever it is: the
#     repository, datasets, SIFs and temporary files have the same path inside as outside;
#   * /dev, /proc, /sys, and /etc's passwd, group, hosts, resolv.conf and localtime;
#   * the network and the process tree: no namespace but the mount namespace is new, so a port
#     opened inside is a port of the host and every process is a host process (signals,
#     `ps`, process groups all work as for any child).
# The wrapper execs (unshare, sh, apptainer keep one pid), so a signal sent to it reaches
# apptainer itself. As root, user-namespace mode is switched on (APPTAINER_USERNS=1, the same as
# `--userns`): its setuid mode needs loop devices that a container sandbox does not give.
#
# Usage: a link named `apptainer` or `singularity` to this script (apptainer-setup.sh makes both
# under .cache/apptainer/bin), or `apptainer-in-sid.sh ARGS`. FDB_APPTAINER_ROOT overrides the
# sid root (default: .cache/apptainer/sid-root of this repository).
set -eu

self="$(readlink -f "$0")"
repo_root="$(cd "$(dirname "${self}")/.." && pwd)"
root="${FDB_APPTAINER_ROOT:-${repo_root}/.cache/apptainer/sid-root}"

if [ ! -x "${root}/usr/bin/apptainer" ]; then
    echo "apptainer-in-sid: no Apptainer in ${root}; run: bash scripts/apptainer-setup.sh" >&2
    exit 127
fi
if [ "$(id -u)" != 0 ]; then
    echo "apptainer-in-sid: needs root (a mount namespace); on a cluster use its own apptainer" \
        "(module load apptainer)" >&2
    exit 126
fi

# Runs as `sh -c SCRIPT apptainer-in-sid ROOT CWD ARGS...` in the new mount namespace.
# shellcheck disable=SC2016  # expanded by the inner shell
inner='
set -eu
root="$1"; cwd="$2"; shift 2
mount --rbind "${root}" "${root}"
for d in dev proc sys; do mount --rbind "/${d}" "${root}/${d}"; done
for path in /*/ /var/tmp/; do
    path="${path%/}"
    case "${path}" in
        /bin | /boot | /dev | /etc | /lib | /lib32 | /lib64 | /libx32 | /lost+found | /proc | \
        /run | /sbin | /sys | /usr | /var) continue ;;
    esac
    [ -d "${path}" ] && [ ! -L "${path}" ] || continue
    mkdir -p "${root}${path}"
    mount --rbind "${path}" "${root}${path}"
done
for f in passwd group hosts resolv.conf localtime; do
    if [ -e "/etc/${f}" ]; then
        [ -e "${root}/etc/${f}" ] || [ -L "${root}/etc/${f}" ] || : >"${root}/etc/${f}"
        mount --bind "$(readlink -f "/etc/${f}")" "${root}/etc/${f}" 2>/dev/null || true
    fi
done
if [ ! -d "${root}${cwd}" ]; then  # a current folder under /usr, /var, ...: bind it too
    mkdir -p "${root}${cwd}"
    mount --rbind "${cwd}" "${root}${cwd}"
fi
mkdir -p "${root}/.old-root"
cd "${root}"
pivot_root . .old-root
umount -l /.old-root
cd "${cwd}" 2>/dev/null || cd /
unset OLDPWD
if [ "$(id -u)" = 0 ]; then export APPTAINER_USERNS=1; fi
export PATH="${PATH:+${PATH}:}/usr/sbin:/usr/bin:/sbin:/bin"
exec /usr/bin/apptainer "$@"
'
exec unshare --mount --propagation private -- /bin/sh -c "${inner}" apptainer-in-sid \
    "${root}" "$(pwd)" "$@"
