#!/usr/bin/env bash
# Installs the Debian packages Plexus needs, if any is missing. Idempotent; needs root (or sudo).
#   liburing-dev  io_uring (the engine)         libnuma-dev  NUMA placement of registered memory
#   pkg-config    finding them                   iproute2     `ip`, for the namespace tests and routes
#   gnuplot-nox   bench-results plots
#   iputils-ping iperf3 curl python3   real clients across the virtual LANs (tests and the
#                         vlan-* benches): ping, iperf3, an HTTP server and curl, multicast sockets
#   procps        pkill: the process-failover test cleans up a killed node's orphaned workload;
#                 sysctl: the router namespace of the gateway test forwards
#   util-linux    nsenter: host routes in a network namespace given by path
#   mount         losetup, mount: the block I/O test on a loop device, the storage tests' file systems
#   storage (PlexusStorage's tests against real clients and a real SAN):
#     tgt           tgtd/tgtadm, a userspace iSCSI target (the SAN the control nodes see)
#     libiscsi-dev  the iSCSI initiator's C API;  libiscsi-bin  iscsi-inq, iscsi-ls, iscsi-readcapacity16
#     nbdkit        the reference NBD server (file, memory plugins)
#     libnbd-bin    nbdinfo, nbdcopy: real NBD clients; nbdfuse (Debian ships it here, "nbdfuse" is only a
#                   virtual name): an NBD export as a file through FUSE (no nbd kernel module), then losetup
#     fio           I/O load with its nbd engine;  e2fsprogs  mkfs.ext4, e2fsck
set -euo pipefail
packages=(liburing-dev libnuma-dev libsqlite3-dev pkg-config iproute2 gnuplot-nox iputils-ping iperf3 curl python3 procps util-linux mount
          tgt libiscsi-dev libiscsi-bin nbdkit libnbd-bin fio e2fsprogs)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
echo "setup: done"
