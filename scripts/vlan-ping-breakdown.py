#!/usr/bin/env python3
"""Splits virtual-LAN ping round trips into their hops, from `perf script` output recorded by
scripts/vlan-ping-breakdown.sh (read that script first: it says which events are recorded and why
they are cheap enough not to change what they measure).

Each round trip is the sequence of eight events below, matched in order within 3 ms of the
request entering node 3's TAP device. Node 3 is the pinging side, node 4 answers; both TAP devices
are called pvl10 (VLAN 10), each in its own namespace. Sizes: an ICMP echo of ping's default 56
data bytes is 84 bytes of IP, 98 with its Ethernet header (the TAP's xmit), 108 with the 10-byte
virtio-net header (a TAP read or write); on the fabric it travels as a 214-byte Ethernet frame
(a 64-byte Plexus header before those 108 bytes, in UDP in IPv4).
"""
import re
import statistics
import sys

STEPS = [  # (thread, event, text the event's fields contain)
    ("ping", "net:net_dev_xmit", "dev=pvl10 "),              # the request enters node 3's TAP
    ("ns-node3", "syscalls:sys_exit_read", ""),              # node 3's engine has read it
    ("ns-node3", "net:net_dev_xmit", "len=214"),             # ... and put it on a fabric veth
    ("ns-node4", "net:netif_receive_skb", "dev=pvl10 "),     # node 4's engine wrote it into its TAP
    ("ns-node4", "net:net_dev_xmit", "dev=pvl10 "),          # node 4's kernel answered (inside the write)
    ("ns-node4", "syscalls:sys_exit_read", ""),              # node 4's engine has read the answer
    ("ns-node4", "net:net_dev_xmit", "len=214"),             # ... and put it on a fabric veth
    ("ns-node3", "net:netif_receive_skb", "dev=pvl10 "),     # node 3's engine wrote it: ping's timestamp
]
NAMES = [
    "node 3 notices the request and reads it from its TAP",
    "node 3: read -> datagram on the fabric",
    "fabric crossing, node 4 receives, writes its TAP",
    "node 4's kernel answers the echo",
    "node 4: write returns -> answer read",
    "node 4: read -> datagram on the fabric",
    "fabric crossing, node 3 receives, writes its TAP",
]
CONTROL = ("next_comm=ns-node1 ", "next_comm=ns-node2 ")

events = []
for line in open(sys.argv[1]):
    m = re.match(r"\s*(\S+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)", line)
    if m:
        events.append((float(m.group(3)) * 1e6, m.group(1), int(m.group(2)), m.group(4), m.group(5) + " "))


def matches(e, step):
    return e[1] == step[0] and e[3] == step[1] and step[2] in e[4]


trips = []  # (segment durations, total, control-node switches on the path, ping's CPU)
i = 0
while i < len(events):
    if not matches(events[i], STEPS[0]):
        i += 1
        continue
    stamps, j, ok = [events[i][0]], i, True
    for step in STEPS[1:]:
        k = j + 1
        while k < len(events) and events[k][0] - events[i][0] < 3000 and not matches(events[k], step):
            k += 1
        if k >= len(events) or not matches(events[k], step):
            ok = False
            break
        stamps.append(events[k][0])
        j = k
    if ok:
        switches = sum(1 for e in events[i:j] if e[3] == "sched:sched_switch" and any(c in e[4] for c in CONTROL))
        trips.append(([b - a for a, b in zip(stamps, stamps[1:])], stamps[-1] - stamps[0], switches, events[i][2]))
    i += 1

if not trips:
    sys.exit("no complete round trip found (was the virtual-LAN ping running while perf recorded?)")


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


print(f"{len(trips)} round trips, each from the request entering node 3's TAP to the reply reaching node 3's kernel")
print(f"{'hop':54s} {'p10':>7s} {'p50':>7s} {'p90':>7s}   µs")
for k, name in enumerate(NAMES):
    v = [t[0][k] for t in trips]
    print(f"{name:54s} {pct(v, .1):7.1f} {statistics.median(v):7.1f} {pct(v, .9):7.1f}")
totals = [t[1] for t in trips]
print(f"{'round trip':54s} {pct(totals, .1):7.1f} {statistics.median(totals):7.1f} {pct(totals, .9):7.1f}")
quiet = [t[1] for t in trips if t[2] == 0]
busy = [t[1] for t in trips if t[2] > 0]
print(f"round trips during which no control node's engine ran: {len(quiet)}"
      + (f", p50 {statistics.median(quiet):.1f} µs" if quiet else ""))
print(f"round trips during which a control node's engine took a CPU: {len(busy)}"
      + (f", p50 {statistics.median(busy):.1f} µs" if busy else ""))
for cpu in sorted({t[3] for t in trips}):
    v = [t[1] for t in trips if t[3] == cpu]
    print(f"ping sent from CPU {cpu}: {len(v)} round trips, p50 {statistics.median(v):.1f} µs")
