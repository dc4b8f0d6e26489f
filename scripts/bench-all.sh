#!/usr/bin/env bash
# Runs every `plexus bench` scenario (fabric core and redundant VIs) in release mode and records the results in
# bench-results/: one JSON file per scenario (the command's own --json line: command, machine,
# date, parameters, plexus, baseline, ratio), a size sweep as CSV, a plot of it, and README.md.
# Nothing in bench-results/ is edited by hand; run this again to refresh it.
#   ROUNDS (default 5) and SECONDS_PER_RUN (default 2) set the effort; `scripts/bench-all.sh vlan`
#   runs only the virtual LAN scenarios, `scripts/bench-all.sh failover` only processor failover,
#   `scripts/bench-all.sh storage` only the storage scenarios, `scripts/bench-all.sh platform` only
#   the idle platform at 16 and 64 processing nodes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds="${ROUNDS:-5}"
secs="${SECONDS_PER_RUN:-2}"
out=bench-results
mkdir -p "$out"
swift build -c release --product plexus >/dev/null
plexus=.build/release/plexus

run() {  # run NAME ARGS... : records the last (JSON) line of `plexus bench ARGS --json`, if it succeeds
    local name="$1"; shift
    echo "== $name: plexus bench $*" >&2
    local tmp
    tmp=$(mktemp)
    if "$plexus" bench "$@" --json > "$tmp"; then
        tail -n 1 "$tmp" > "$out/$name.json"
        rm -f "$tmp"
    else
        rm -f "$tmp"
        echo "== $name FAILED (nothing recorded): plexus bench $*" >&2
        return 1
    fi
}

vlan() {  # the virtual LAN scenarios: root, iproute2, iperf3, ping
    if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v iperf3 >/dev/null; then
        run vlan-tcp vlan-tcp --seconds "$((secs > 3 ? secs : 3))" --rounds "$rounds"
        run vlan-ping-blocking vlan-ping --count 500 --rounds "$rounds"
        run vlan-ping-busy-poll vlan-ping --count 500 --rounds "$rounds" --busy-poll
        run vlan-failover vlan-failover --seconds 6
    else
        echo "== vlan-* skipped: need root, iproute2 and iperf3 (scripts/setup.sh)" >&2
    fi
}
failover() {  # processor failover: root, iproute2, python3
    if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v python3 >/dev/null; then
        run failover failover --rounds "$rounds"
        # 64 processing nodes in namespaces complete about half the drill's rounds on a 2-CPU
        # machine (docs/benchmarks.md, "Processor failover at scale"): said, not fatal.
        run failover-64 failover --nodes 64 --rounds "$rounds" || true
    else
        echo "== failover skipped: needs root, iproute2 and python3 (scripts/setup.sh)" >&2
    fi
}
storage() {  # a processor's disk over NBD against nbdkit and io_uring on the file: fio, nbdkit
    if command -v fio >/dev/null && command -v nbdkit >/dev/null; then
        run storage-randread-4k-qd32 storage --pattern randread --bs 4k --qd 32 --seconds "$secs" --rounds "$rounds"
        run storage-read-1m storage --pattern read --bs 1m --qd 32 --seconds "$secs" --rounds "$rounds"
        run storage-write-1m storage --pattern write --bs 1m --qd 32 --seconds "$secs" --rounds "$rounds"
    else
        echo "== storage-* skipped: needs fio and nbdkit" >&2
    fi
}
platform() {  # the embedded platform at rest, at 16 and 64 processing nodes (each against 6)
    run platform-idle-16 platform-idle --nodes 16 --seconds "$((secs > 3 ? secs : 3))"
    run platform-idle-64 platform-idle --nodes 64 --seconds "$((secs > 3 ? secs : 3))"
}
if [ "${1:-}" = "vlan" ] || [ "${1:-}" = "failover" ] || [ "${1:-}" = "storage" ] || [ "${1:-}" = "platform" ]; then  # scripts/bench-all.sh vlan|failover|storage|platform: only these
    "$1"
    python3 scripts/bench-table.py "$out" > "$out/README.md"
    exit 0
fi

run vi-throughput-16896 vi-throughput --size 16896 --seconds "$secs" --rounds "$rounds"
run vi-throughput-64 vi-throughput --size 64 --seconds "$secs" --rounds "$rounds"
run vi-latency-64-blocking vi-latency --size 64 --count 20000 --rounds "$rounds"
run vi-latency-64-busy-poll vi-latency --size 64 --count 20000 --rounds "$rounds" --busy-poll
run vi-latency-16896-blocking vi-latency --size 16896 --count 10000 --rounds "$rounds"
run rdma-write-16896 rdma-write --size 16896 --seconds "$secs" --rounds "$rounds"
run vi-scale-16384 vi-scale --vis 16384 --size 1024 --seconds "$secs" --rounds "$rounds"

# Redundant VIs (the RCLAN layer).
run rvi-throughput-16896 rvi-throughput --size 16896 --seconds "$secs" --rounds "$rounds"
run rvi-messages-64 rvi-messages --size 64 --seconds "$secs" --rounds "$rounds"
run rvi-latency-64-blocking rvi-latency --size 64 --count 20000 --rounds "$rounds"
run rvi-latency-64-busy-poll rvi-latency --size 64 --count 20000 --rounds "$rounds" --busy-poll
run rvi-failover-16896 rvi-failover --size 16896 --seconds "$secs" --rounds "$rounds"
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
    run rvi-failover-16896-link rvi-failover --size 16896 --seconds "$secs" --rounds "$rounds" --link
else
    echo "== rvi-failover --link skipped: needs root and iproute2" >&2
fi
run rvi-loss-5 rvi-loss --size 16896 --loss 5 --seconds "$secs" --rounds "$rounds"

vlan
failover
storage
platform

# Throughput against frame size, Plexus and both baselines, for the plot.
echo "size,plexus_gbytes_per_s,io_uring_gbytes_per_s,plain_gbytes_per_s,plain_gso_gbytes_per_s,plexus_frames_per_s,io_uring_frames_per_s,plain_frames_per_s,plain_gso_frames_per_s,ratio,ratio_to_plain_gso" > "$out/throughput-sweep.csv"
for size in 64 256 1024 4096 8192 16896; do
    run "sweep-$size" vi-throughput --size "$size" --seconds "$secs" --rounds "$rounds"
    python3 - "$out/sweep-$size.json" >> "$out/throughput-sweep.csv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
b = r["baseline"]
print(",".join(str(x) for x in [r["parameters"]["size"], r["plexus"]["gbytes_per_s"], b["io_uring"]["gbytes_per_s"],
      b["plain"]["gbytes_per_s"], b["plain_gso"]["gbytes_per_s"], r["plexus"]["frames_per_s"], b["io_uring"]["frames_per_s"],
      b["plain"]["frames_per_s"], b["plain_gso"]["frames_per_s"], r["ratio"], r["ratio_to_plain_gso"]]))
PY
done

gnuplot <<GP
set terminal pngcairo size 900,520 font "sans,11" noenhanced
set output "$out/throughput-vs-size.png"
set title "One-way throughput over loopback, one VI (medians of $rounds interleaved rounds)"
set xlabel "frame payload (bytes)"
set ylabel "delivered GB/s"
set logscale x 2
set xtics ("64" 64, "256" 256, "1024" 1024, "4096" 4096, "8192" 8192, "16896" 16896)
set key top left
set grid
set datafile separator ","
plot "$out/throughput-sweep.csv" using 1:2 with linespoints lw 2 title "Plexus VI", \
     "" using 1:3 with linespoints title "raw UDP, io_uring (baseline)", \
     "" using 1:4 with linespoints title "raw UDP, plain send/recv (baseline)", \
     "" using 1:5 with linespoints dt 2 title "raw UDP, plain sendmsg + GSO (informational)"
GP

python3 scripts/bench-table.py "$out" > "$out/README.md"
echo "bench-all: results in $out/" >&2
