#!/usr/bin/env bash
# The floor of any userspace overlay for `plexus bench vlan-ping` on this machine
# (docs/virtual-lan.md, "The floor of any overlay here"). Two namespaces joined the way
# NamespaceFabric joins Plexus nodes (a veth from each into a Linux bridge) and, as the baseline,
# by a direct veth pair; Benchmarks/calibration/tap-overlay.c carries TAP packets between them in
# UDP, one busy-polling process per namespace pinned to CPU 0 and CPU 1, nothing else. Then the
# same pings as the bench (ping -i 0.002, alternating overlay and veth each round) and the ratio of
# the p50s. Needs root, iproute2, ping, cc, python3.
#   scripts/tap-overlay-floor.sh [COUNT [ROUNDS]]      (defaults 500 and 5)
#   WAKERS=N WAKE_US=U scripts/tap-overlay-floor.sh    also runs N threads that each wake every U µs
#     (default U 500): the background wake-ups a running platform has (its control nodes' engines
#     wake about 3 500 times a second each), which change how fast the veth pair answers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
count="${1:-500}"
rounds="${2:-5}"
[ "$(id -u)" = 0 ] || { echo "tap-overlay-floor: needs root" >&2; exit 2; }
for tool in cc ip ping python3; do
    command -v "$tool" >/dev/null || { echo "tap-overlay-floor: needs $tool (cc: apt-get install gcc; the rest: scripts/setup.sh)" >&2; exit 2; }
done
bin=$(mktemp /tmp/tap-overlay.XXXXXX)
cc -O2 -o "$bin" Benchmarks/calibration/tap-overlay.c
p="pxfl$$"
cleanup() {
    pkill -f "$bin" 2>/dev/null || true
    ip netns del "${p}n3" 2>/dev/null || true
    ip netns del "${p}n4" 2>/dev/null || true
    ip link del "${p}br" 2>/dev/null || true
    rm -f "$bin"
}
trap cleanup EXIT
ip link add "${p}br" mtu 65535 type bridge
ip link set "${p}br" up
for n in 3 4; do
    ns="${p}n$n"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "${p}${n}h" mtu 65535 type veth peer name "${p}${n}n" mtu 65535
    ip link set "${p}${n}n" netns "$ns"
    ip link set "${p}${n}h" master "${p}br" up
    ip -n "$ns" addr add "198.19.1.$n/24" dev "${p}${n}n"
    ip -n "$ns" link set "${p}${n}n" up
done
ip link add "${p}v3" netns "${p}n3" type veth peer name "${p}v4" netns "${p}n4"
for n in 3 4; do
    ip -n "${p}n$n" addr add "10.99.0.$n/24" dev "${p}v$n"
    ip -n "${p}n$n" link set "${p}v$n" up
done
for n in 3 4; do
    other=$((7 - n))
    ip netns exec "${p}n$n" "$bin" pxt "198.19.1.$n" "198.19.1.$other" 7100 $((n - 3)) > "/tmp/${p}-$n.out" 2>&1 &
done
for n in 3 4; do
    for _ in $(seq 1 100); do grep -q ready "/tmp/${p}-$n.out" 2>/dev/null && break; sleep 0.05; done
    ip -n "${p}n$n" link set pxt address "02:77:00:00:00:0$n" up
    ip -n "${p}n$n" addr add "10.77.0.$n/24" dev pxt
done
rm -f /tmp/${p}-*.out
for _ in $(seq 1 "${WAKERS:-0}"); do "$bin" --waker "${WAKE_US:-500}" & done
ip netns exec "${p}n3" ping -c 3 -W 1 10.77.0.4 >/dev/null
ip netns exec "${p}n3" ping -c 3 -W 1 10.99.0.4 >/dev/null
: > "/tmp/${p}-overlay"; : > "/tmp/${p}-veth"
for r in $(seq 1 "$rounds"); do
    for k in 0 1; do
        if [ $(((k + r) % 2)) = 0 ]; then addr=10.77.0.4 out="/tmp/${p}-overlay"; else addr=10.99.0.4 out="/tmp/${p}-veth"; fi
        ip netns exec "${p}n3" ping -c "$count" -i 0.002 -W 1 "$addr" | grep -o 'time=[0-9.]*' | cut -d= -f2 >> "$out"
    done
done
python3 - "/tmp/${p}-overlay" "/tmp/${p}-veth" <<'EOF'
import statistics, sys
o = sorted(float(x) * 1000 for x in open(sys.argv[1]) if x.strip())
v = sorted(float(x) * 1000 for x in open(sys.argv[2]) if x.strip())
pct = lambda s, q: s[min(len(s) - 1, int(len(s) * q))]
print(f"tap-overlay floor: overlay p10 {pct(o, .1):.1f} µs p50 {statistics.median(o):.1f} µs p99 {pct(o, .99):.1f} µs ({len(o)} pings); "
      f"veth p10 {pct(v, .1):.1f} µs p50 {statistics.median(v):.1f} µs p99 {pct(v, .99):.1f} µs ({len(v)} pings); "
      f"ratio of p50s {statistics.median(o) / statistics.median(v):.2f}")
EOF
rm -f "/tmp/${p}-overlay" "/tmp/${p}-veth"
