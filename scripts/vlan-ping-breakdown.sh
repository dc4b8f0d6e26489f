#!/usr/bin/env bash
# Where a virtual-LAN ping's round trip spends its time, hop by hop (docs/virtual-lan.md, "Where a
# round trip goes"). Runs `plexus bench vlan-ping --count 3000 --rounds 1 ARGS...` (release build)
# and, while its virtual-LAN ping runs, records two seconds of kernel events with perf, then splits
# each round trip into its hops (scripts/vlan-ping-breakdown.py).
#   scripts/vlan-ping-breakdown.sh --busy-poll
# Needs root (the bench does), perf (Debian: linux-perf; not installed by setup.sh, this is a
# diagnostic, not part of the tests) and python3.
#
# The events are few and filtered in the kernel so that recording them does not change what they
# measure: a packet entering or leaving a TAP device called pvl10, a 214-byte frame on a veth (a
# ping's frame on the fabric), a 108-byte read or write (a TAP packet of a ping), and context
# switches. Recording every syscall or every fabric frame instead (heartbeats are about 20 000
# frames a second) slows the path down by half.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v perf >/dev/null || { echo "vlan-ping-breakdown: needs perf (apt-get install linux-perf)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "vlan-ping-breakdown: needs root" >&2; exit 2; }
swift build -c release --product plexus >/dev/null
work=$(mktemp -d /tmp/plexus-breakdown.XXXXXX)
trap 'rm -rf "$work"' EXIT
.build/release/plexus bench vlan-ping --count 3000 --rounds 1 "$@" > "$work/bench.out" 2>&1 &
bench=$!
# The bench pings the veth pair and the virtual LAN in turn; wait for the virtual LAN's ping.
for _ in $(seq 1 600); do
    pgrep -f "ping -c 3000 -i 0.002 -W 1 10.10.0.4" >/dev/null && break
    sleep 0.1
done
sleep 0.5
perf record -q -a -o "$work/perf.data" \
    -e net:net_dev_xmit --filter 'name == "pvl10" || len == 214' \
    -e net:netif_receive_skb --filter 'name == "pvl10"' \
    -e syscalls:sys_exit_read --filter 'ret == 108' \
    -e syscalls:sys_exit_write --filter 'ret == 108' \
    -e sched:sched_switch -- sleep 2 2>/dev/null
wait "$bench"
grep "vlan-ping:" "$work/bench.out" || { cat "$work/bench.out" >&2; exit 1; }
perf script -i "$work/perf.data" -F comm,cpu,time,event,trace 2>/dev/null > "$work/events.txt"
python3 scripts/vlan-ping-breakdown.py "$work/events.txt"
