#!/usr/bin/env python3
"""Writes bench-results/README.md from the JSON files scripts/bench-all.sh recorded."""
import json, os, sys

d = sys.argv[1]
def load(name):
    p = os.path.join(d, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None

rows = []
def add(name, label, figure, target, fmt):
    r = load(name)
    if not r:
        return
    rows.append((label, fmt(r), f'{r["ratio"]:.2f}', target, "`" + r["command"] + "`"))

tp = lambda r: (f'{r["plexus"]["frames_per_s"]/1e3:.0f} k/s, {r["plexus"]["gbytes_per_s"]:.2f} GB/s (lost {r["plexus"]["lost"]}) vs {r["baseline"]["method"]} {r["baseline"]["frames_per_s"]/1e3:.0f} k/s, {r["baseline"]["gbytes_per_s"]:.2f} GB/s'
                + (f'; informational: plain+GSO {r["baseline"]["plain_gso"]["frames_per_s"]/1e3:.0f} k/s, Plexus ÷ it {r["ratio_to_plain_gso"]:.2f}' if "plain_gso" in r["baseline"] else ""))
lat = lambda r: f'p50 {r["plexus"]["p50_us"]:.1f} µs, p99 {r["plexus"]["p99_us"]:.1f} µs vs {r["baseline"]["method"]} p50 {r["baseline"]["p50_us"]:.1f} µs'
add("vi-throughput-16896", "vi-throughput 16896 B", None, "≥ 0.90", tp)
add("vi-throughput-64", "vi-throughput 64 B", None, "≥ 0.90", tp)
add("vi-latency-64-blocking", "vi-latency 64 B, blocking", None, "≤ 1.2", lat)
add("vi-latency-64-busy-poll", "vi-latency 64 B, busy-poll", None, "≤ 1.2", lat)
add("vi-latency-16896-blocking", "vi-latency 16896 B, blocking", None, "≤ 1.2", lat)
add("rdma-write-16896", "rdma-write 16896 B (÷ VI send, same run)", None, "≥ 0.85",
    lambda r: f'{r["plexus"]["gbytes_per_s"]:.2f} GB/s landed vs VI send {r["baseline"]["vi_send"]["gbytes_per_s"]:.2f} GB/s')
add("vi-scale-16384", "vi-scale 16384 VIs, 1024 B (÷ one VI)", None, "≥ 0.90",
    lambda r: f'{r["plexus"]["frames_per_s"]/1e3:.0f} k/s vs one VI {r["baseline"]["single_vi"]["frames_per_s"]/1e3:.0f} k/s')

rtp = lambda r: f'{r["plexus"]["frames_per_s"]/1e3:.0f} k msgs/s, {r["plexus"]["gbytes_per_s"]:.2f} GB/s, every message acknowledged (lost {r["plexus"]["lost"]}, duplicated {r["plexus"]["duplicated"]}) vs {r["baseline"]["method"]} {r["baseline"]["gbytes_per_s"]:.2f} GB/s'
add("rvi-throughput-16896", "rvi-throughput 16896 B", None, "≥ 0.85", rtp)
add("rvi-messages-64", "rvi-messages 64 B (coalesced)", None, "≥ 5",
    lambda r: f'{r["plexus"]["frames_per_s"]/1e6:.2f} M msgs/s vs {r["baseline"]["method"]} {r["baseline"]["frames_per_s"]/1e3:.0f} k datagrams/s')
add("rvi-latency-64-blocking", "rvi-latency 64 B, blocking", None, "≤ 1.3", lat)
add("rvi-latency-64-busy-poll", "rvi-latency 64 B, busy-poll", None, "≤ 1.3", lat)
fo = lambda r: f'longest delivery gap {r["plexus"]["gap_ms"]:.2f} ms (worst round {r["plexus"]["gap_ms_worst"]:.2f} ms), lost {r["plexus"]["lost"]}, duplicated {r["plexus"]["duplicated"]}; undisturbed stream {r["baseline"]["gap_ms"]:.2f} ms'
add("rvi-failover-16896", "rvi-failover 16896 B, fault layer (ratio = gap ÷ 20 ms)", None, "≤ 1 (gap ≤ 20 ms), lost 0, dup 0", fo)
add("rvi-failover-16896-link", "rvi-failover 16896 B, ip link down (ratio = gap ÷ 20 ms)", None, "≤ 1 (gap ≤ 20 ms), lost 0, dup 0", fo)
add("rvi-loss-5", "rvi-loss 5 % on leg A (÷ lossless run)", None, "≥ 0.80",
    lambda r: f'{r["plexus"]["gbytes_per_s"]:.2f} GB/s with {r["plexus"]["retransmissions"]} retransmissions vs lossless {r["baseline"]["gbytes_per_s"]:.2f} GB/s; lost {r["plexus"]["lost"]}')

add("vlan-tcp", "vlan-tcp: iperf3 TCP over the virtual LAN (÷ veth pair)", None, "≥ 0.30",
    lambda r: f'{r["plexus"]["gbits_per_s"]:.2f} Gbit/s vs veth {r["baseline"]["veth"]["gbits_per_s"]:.2f} Gbit/s')
vping = lambda r: (f'p50 {r["plexus"]["p50_us"]:.1f} µs, p99 {r["plexus"]["p99_us"]:.1f} µs vs veth p50 {r["baseline"]["veth"]["p50_us"]:.1f} µs, p99 {r["baseline"]["veth"]["p99_us"]:.1f} µs'
    + (f'; the kernel\'s echo turnaround through a TAP device p50 {r["baseline"]["tap_turnaround"]["p50_us"]:.1f} µs (twice it: {r["tap_floor_ratio"]:.2f} × veth)'
       if "tap_turnaround" in r["baseline"] else ''))
add("vlan-ping-blocking", "vlan-ping, engines blocking (p50 ÷ veth p50)", None, "≤ 3", vping)
add("vlan-ping-busy-poll", "vlan-ping, processing nodes busy-poll (p50 ÷ veth p50)", None, "≤ 3", vping)
def add_floor(name, label, target):
    r = load(name)
    if not r or r.get("floor_ratio") is None:
        return
    o, v = r["baseline"]["bare_overlay"], r["baseline"]["veth_with_overlay"]
    rows.append((label, f'Plexus p50 {r["plexus"]["p50_us"]:.1f} µs vs the bare TAP ⇄ UDP overlay p50 {o["p50_us"]:.1f} µs, p99 {o["p99_us"]:.1f} µs '
                 f'(same fabric, platform stopped; veth p50 {v["p50_us"]:.1f} µs then)', f'{r["floor_ratio"]:.2f}', target, "`" + r["command"] + "`"))
add_floor("vlan-ping-blocking", "vlan-ping floor, engines blocking (p50 ÷ bare overlay p50)", "reported")
add_floor("vlan-ping-busy-poll", "vlan-ping floor, busy-poll (p50 ÷ bare overlay p50)", "≤ 1.1")
add("vlan-failover", "vlan-failover: iperf3 through a control node's death and fabric A failing (ratio = gap ÷ 50 ms)", None, "≤ 1 (gap ≤ 50 ms), TCP survives",
    lambda r: f'longest gap {r["plexus"]["gap_ms"]:.2f} ms (control node {r["plexus"]["gap_control_node_ms"]:.2f} ms, fabric {r["plexus"]["gap_fabric_ms"]:.2f} ms); TCP connection {"survived" if r["plexus"]["tcp_connection_survived"] else "DID NOT survive"}; undisturbed stream {r["baseline"]["undisturbed_gap_ms"]:.2f} ms')
add("failover", "failover: kill -9 of a web service's processor to the spare's first good reply (ratio = total ÷ 300 ms)", None, "≤ 1 (total ≤ 300 ms)",
    lambda r: f'total {r["plexus"]["total_ms"]:.1f} ms (detect {r["plexus"]["detect_ms"]:.1f} ms, migrate {r["plexus"]["migrate_ms"]:.1f} ms), {r["plexus"]["failed_requests"]} failed requests; the service restarted in place {r["baseline"]["service_restart_in_place_ms"]:.1f} ms')
add("failover-64", "failover at 64 processing nodes: the same drill (ratio = total ÷ the 4-processing-node drill's, same run)", None, "≤ 1.5 and total ≤ 300 ms",
    lambda r: f'{r["plexus"]["nodes"]} processing nodes: total {r["plexus"]["total_ms"]:.1f} ms (detect {r["plexus"]["detect_ms"]:.1f} ms, migrate {r["plexus"]["migrate_ms"]:.1f} ms), {r["plexus"]["failed_requests"]} failed requests '
              f'vs {r["baseline"]["nodes"]} processing nodes: total {r["baseline"]["total_ms"]:.1f} ms (detect {r["baseline"]["detect_ms"]:.1f} ms, migrate {r["baseline"]["migrate_ms"]:.1f} ms); '
              f'the service restarted in place {r["restart_in_place"]["service_restart_in_place_ms"]:.1f} ms')

sto = lambda r: (f'{r["plexus"]["iops"]:.0f} IOPS, {r["plexus"]["mbytes_per_s"]:.1f} MB/s, p50 {r["plexus"]["p50_us"]:.0f} µs, p99 {r["plexus"]["p99_us"]:.0f} µs '
    f'vs nbdkit {r["baseline"]["iops"]:.0f} IOPS, {r["baseline"]["mbytes_per_s"]:.1f} MB/s, p50 {r["baseline"]["p50_us"]:.0f} µs; '
    f'io_uring on the file {r["limit"]["iops"]:.0f} IOPS, {r["limit"]["mbytes_per_s"]:.1f} MB/s')
add("storage-randread-4k-qd32", "storage: fio 4 KiB random reads, QD 32, through NBD into a processor's disk (÷ nbdkit)", None, "≥ 0.6", sto)
add("storage-read-1m", "storage: fio 1 MiB sequential reads, QD 32 (÷ nbdkit)", None, "≥ 0.7", sto)
add("storage-write-1m", "storage: fio 1 MiB sequential writes, QD 32 (÷ nbdkit)", None, "≥ 0.7", sto)

idle = lambda r: (f'{r["plexus"]["nodes"]} processing nodes: {r["plexus"]["cpu_seconds_per_second"]:.2f} CPU s/s idle, {r["plexus"]["rvis"]} RVIs '
    f'({r["plexus"].get("rvis_with_windows", "?")} holding windows), {r["plexus"]["heartbeats_per_second"]:.0f} probes/s, wake-ups/s {r["plexus"].get("control_node_wakeups_per_second", 0):.0f} per control node '
    f'and {r["plexus"].get("processing_node_wakeups_per_second", 0):.0f} per processing node, {r["plexus"]["resident_mib"]:.0f} MiB, up in {r["plexus"]["start_ms"]:.0f} ms '
    f'vs 6 nodes: {r["baseline"]["cpu_seconds_per_second"]:.2f} CPU s/s, {r["baseline"]["rvis"]} RVIs, {r["baseline"]["heartbeats_per_second"]:.0f} probes/s')
add("platform-idle-16", "platform-idle: the embedded platform at rest, 16 processing nodes (CPU use ÷ 6 nodes')", None, "reported", idle)
add("platform-idle-64", "platform-idle: the embedded platform at rest, 64 processing nodes (CPU use ÷ 6 nodes')", None, "reported", idle)

any_r = next((load(n) for n in ["vi-throughput-16896", "vi-throughput-64"] if load(n)), None)
print("# Benchmark results (generated by scripts/bench-all.sh — do not edit)\n")
if any_r:
    m = any_r["machine"]
    print(f'Machine: {m["cpus"]} × {m["cpu_model"]}, {m["memory_gib"]} GiB, Linux {m["kernel"]}. Date: {any_r["date"]}.\n')
print("Every ratio is measured in the same run against its baseline, with the methods interleaved over the")
print("rounds and medians reported; the raw numbers are in the JSON file of each row. Baselines: the better of")
print("two minimal UDP pairs with no Plexus layers, one on io_uring and one on plain send/recv (both reported in")
print("each JSON file). Throughput ratio = Plexus ÷ baseline; latency ratio = Plexus p50 ÷ baseline p50.\n")
print("| scenario | figures | ratio | target | command |")
print("|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
print("\n![throughput against frame size](throughput-vs-size.png)\n")
print("`throughput-sweep.csv` holds the points of the plot. See docs/benchmarks.md for how to read these.")
