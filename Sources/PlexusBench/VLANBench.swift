import CPlexus
import Foundation
import PlexusCore
import PlexusNode
import PlexusNamespaces
import PlexusLAN

/// vlan-tcp: iperf3 TCP over the virtual LAN against the veth pair.
public func vlanTCP(_ options: BenchOptions) throws -> VLANTCPComparison { try options.vlanTCPScenario() }
/// vlan-ping: ping over the virtual LAN against the veth pair, the TAP turnaround and the bare
/// overlay.
public func vlanPing(_ options: BenchOptions) throws -> VLANPingResult { try options.vlanPingScenario() }
/// vlan-failover: iperf3 through a control node's death and a fabric failure.
public func vlanFailover(_ options: BenchOptions) throws -> VLANFailoverComparison { try options.vlanFailoverScenario() }

/// The virtual LAN scenarios: real `iperf3` and `ping` between two processing nodes' network
/// namespaces over the virtual LAN (TAP devices, both fabrics, two control nodes), against the
/// same two namespaces joined directly by a kernel veth pair, in the same run.
struct VLANBed {
    static let vlan = VLANID(10)!
    let fabric: NamespaceFabric
    let platform: LANPlatform
    let server: BackgroundProcess
    /// The addresses of node 4 over the virtual LAN and over the direct veth pair.
    let overLAN = "10.10.0.4", overVeth = "10.99.0.4"

    init(busyPoll: Bool = false, heartbeatUs: Int = 1000) throws {
        guard getuid() == 0 else { throw BenchError("the vlan-* scenarios need root (network namespaces, TAP devices)") }
        for tool in ["ip", "iperf3", "ping"] where NamespaceFabric.execute(["which", tool]).status != 0 {
            throw BenchError("the vlan-* scenarios need `\(tool)` (scripts/setup.sh installs it)")
        }
        // Nodes 1 and 2 are the control nodes, 3 and 4 processing nodes on VLAN 10.
        fabric = try NamespaceFabric(nodes: 4, linkMTU: 65535)
        do {
            let state = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-bench-macs-\(getpid())").path
            defer { try? FileManager.default.removeItem(atPath: state) }
            platform = try LANPlatform(PlatformDefinition(controlNodes: [1, 2], processingNodes: [3, 4],
                                                          vlans: [Self.vlan: [3, 4]]),
                                       macState: state, fabric: fabric, layerConfiguration: rclanConfiguration(heartbeatUs: heartbeatUs),
                                       nodePollMode: busyPoll ? .busyPoll : .blocking)
            for n: NodeNumber in [3, 4] { try platform.addAddress("10.10.0.\(n)/24", node: n, vlan: Self.vlan) }
            // The baseline: a veth pair straight between the two namespaces.
            let (a, b) = ("\(fabric.prefix)v3", "\(fabric.prefix)v4")
            try NamespaceFabric.run(["ip", "link", "add", a, "netns", fabric.namespace(3), "type", "veth", "peer", "name", b,
                                     "netns", fabric.namespace(4)])
            try NamespaceFabric.run(["ip", "-n", fabric.namespace(3), "addr", "add", "10.99.0.3/24", "dev", a])
            try NamespaceFabric.run(["ip", "-n", fabric.namespace(4), "addr", "add", "10.99.0.4/24", "dev", b])
            try NamespaceFabric.run(["ip", "-n", fabric.namespace(3), "link", "set", a, "up"])
            try NamespaceFabric.run(["ip", "-n", fabric.namespace(4), "link", "set", b, "up"])
            server = try fabric.spawn(in: 4, ["iperf3", "-s"])
            let fabric = self.fabric
            guard waitUntil(seconds: 10, { fabric.execute(in: 4, ["ss", "-ltn"]).output.contains(":5201") }),
                  waitUntil(seconds: 10, { fabric.execute(in: 3, ["ping", "-c", "1", "-W", "1", "10.10.0.4"]).status == 0 })
            else { throw BenchError("the virtual LAN did not come up (iperf3 server or ping)") }
        } catch {
            fabric.teardown()
            throw error
        }
    }

    /// `iperf3 -c` from node 3 for `seconds`; its JSON result.
    func iperf(to address: String, seconds: Double, interval: Double? = nil) throws -> IPerf3Result {
        var args = ["iperf3", "-c", address, "-t", String(seconds), "-J"]
        if let interval { args += ["-i", String(interval)] }
        var last = ""
        for _ in 0..<3 {  // the server takes one client at a time; retry if it is still busy
            let r = fabric.execute(in: 3, args)
            if r.status == 0, let result = IPerf3Result(json: r.output) { return result }
            last = r.output
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw BenchError("iperf3 to \(address) failed: \(last.suffix(300))")
    }

    /// Round-trip times (ns) of `count` pings from node 3, 2 ms apart.
    func ping(_ address: String, count: Int) throws -> [UInt64] {
        let r = fabric.execute(in: 3, ["ping", "-c", "\(count)", "-i", "0.002", "-W", "1", address])
        let samples = r.output.split(separator: "\n").compactMap { line -> UInt64? in
            guard let t = line.range(of: "time=") else { return nil }
            let value = line[t.upperBound...].prefix { $0.isNumber || $0 == "." }
            return Double(value).map { UInt64($0 * 1e6) }
        }
        guard samples.count >= count / 2 else { throw BenchError("ping \(address): \(samples.count) of \(count) answered") }
        return samples
    }

    /// The kernel's own cost of answering an echo through a TAP device, in node 4's namespace
    /// while the platform runs: `count` ICMP echo requests written into a probe TAP device
    /// (addressed to its own 10.98.0.1), each timed from the write to reading the reply. Every
    /// virtual-LAN ping pays this about twice (node 4's kernel answers through its TAP; node 3's
    /// kernel sends the request into its TAP and takes the reply from it), whatever carries the
    /// frames between the two TAP devices.
    func tapTurnaround(count: Int) throws -> [UInt64] {
        let ns = fabric.namespace(4)
        let fd = try platform.ethernet(4) { _ -> Int32 in  // its engine thread is in the namespace
            var actual = [CChar](repeating: 0, count: Int(IFNAMSIZ))
            let fd = plx_tap_open("pxprobe", 0, &actual)
            guard fd >= 0 else { throw PlexusError(.system, "cannot open the probe TAP device", errno: -fd) }
            return fd
        }
        defer { close(fd) }
        try NamespaceFabric.run(["ip", "-n", ns, "link", "set", "pxprobe", "address", "02:00:00:98:00:01", "up"])
        try NamespaceFabric.run(["ip", "-n", ns, "addr", "add", "10.98.0.1/24", "dev", "pxprobe"])
        try NamespaceFabric.run(["ip", "-n", ns, "neigh", "replace", "10.98.0.2", "lladdr", "02:00:00:98:00:02",
                                 "dev", "pxprobe", "nud", "permanent"])
        let mac: [UInt8] = [2, 0, 0, 0x98, 0, 1]
        var samples = [UInt64](repeating: 0, count: count)
        let n = plx_tap_echo_probe(fd, mac, 0x0A62_0001, 0x0A62_0002, Int32(count), &samples)
        guard n == Int32(count) else { throw BenchError("the TAP turnaround probe failed: \(n < 0 ? String(cString: strerror(-n)) : "\(n) samples")") }
        return samples
    }

    /// Stops the platform and the iperf3 server, keeping the namespaces and the veth pair (the
    /// bare overlay then runs on the same fabric with nothing else spinning).
    func stopPlatform() {
        server.kill()
        platform.stop()
    }

    func stop() {
        stopPlatform()
        fabric.teardown()
    }
}

/// The floor of any userspace overlay for what `vlan-ping` measures
/// (Benchmarks/calibration/tap-overlay.c; docs/virtual-lan.md, "The floor of any overlay here"):
/// in nodes 3 and 4's namespaces, one process each, pinned to CPU 0 and CPU 1 as the busy-polling
/// engines are, busy-polls a TAP device `pxt` and a UDP socket on fabric A and carries each
/// packet across in one datagram: no header, no reliability, no second fabric, no control
/// nodes. Its ping p50 is what Plexus's is compared with (`floor_ratio`).
struct BareOverlay {
    let processes: [BackgroundProcess]
    let binary: String
    /// Node 4 over the overlay.
    let address = "10.77.0.4"

    /// The calibration source, found from this file's place in the source tree.
    static var source: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
            .appendingPathComponent("Benchmarks/calibration/tap-overlay.c").path
    }

    /// Why the overlay cannot run here, or nil.
    static var unavailableReason: String? {
        if !FileManager.default.fileExists(atPath: source) { return "\(source) is not here (the bench runs from a source tree)" }
        if NamespaceFabric.execute(["which", "cc"]).status != 0 { return "no C compiler (cc)" }
        return nil
    }

    init(on fabric: NamespaceFabric) throws {
        binary = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-tap-overlay-\(getpid())").path
        let built = NamespaceFabric.execute(["cc", "-O2", "-o", binary, Self.source])
        guard built.status == 0 else { throw BenchError("building the bare overlay failed: \(built.output.suffix(300))") }
        var started: [BackgroundProcess] = []
        do {
            for n in [3, 4] {
                let peer = 7 - n
                started.append(try fabric.spawn(in: n, [binary, "pxt", fabric.ip(n, .a), fabric.ip(peer, .a), "7100", "\(n - 3)"]))
            }
            for n in [3, 4] {
                guard waitUntil(seconds: 5, { fabric.execute(in: n, ["ip", "link", "show", "pxt"]).status == 0 }) else {
                    throw BenchError("the bare overlay's TAP device did not appear in node \(n)'s namespace")
                }
                try NamespaceFabric.run(["ip", "-n", fabric.namespace(n), "link", "set", "pxt", "address", "02:77:00:00:00:0\(n)", "up"])
                try NamespaceFabric.run(["ip", "-n", fabric.namespace(n), "addr", "add", "10.77.0.\(n)/24", "dev", "pxt"])
            }
            guard waitUntil(seconds: 10, { fabric.execute(in: 3, ["ping", "-c", "1", "-W", "1", "10.77.0.4"]).status == 0 }) else {
                throw BenchError("the bare overlay does not answer ping")
            }
        } catch {
            for p in started { p.kill() }
            try? FileManager.default.removeItem(atPath: binary)
            throw error
        }
        processes = started
    }

    func stop() {
        for p in processes { p.kill() }
        try? FileManager.default.removeItem(atPath: binary)
    }
}

extension BenchOptions {
    func vlanTCPScenario() throws -> VLANTCPComparison {
        let bed = try VLANBed()
        defer { bed.stop() }
        var lan: [Double] = [], veth: [Double] = [], retransmits: [Int] = []
        for round in 0..<rounds {
            for k in 0..<2 {
                let viaLAN = (k + round) % 2 == 0
                let r = try bed.iperf(to: viaLAN ? bed.overLAN : bed.overVeth, seconds: seconds)
                if viaLAN {
                    lan.append(r.receivedBitsPerSecond)
                    retransmits.append(r.retransmits)
                } else {
                    veth.append(r.receivedBitsPerSecond)
                }
                note(String(format: "  round %d %-12@ %.2f Gbit/s", round + 1, (viaLAN ? "virtual LAN" : "veth") as NSString,
                            r.receivedBitsPerSecond / 1e9))
            }
        }
        func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
        let p = median(lan), b = median(veth)
        let ratio = p / b
        say(String(format: "vlan-tcp: virtual LAN %.2f Gbit/s, veth pair %.2f Gbit/s, ratio %.2f (target ≥ 0.30)",
                     p / 1e9, b / 1e9, ratio))
        return VLANTCPComparison(
            plexus: TCPFigures(gbitsPerSecond: p / 1e9, runsGbitsPerSecond: lan.map { $0 / 1e9 }, tcpRetransmits: retransmits),
            baseline: VethBaseline(veth: TCPFigures(gbitsPerSecond: b / 1e9, runsGbitsPerSecond: veth.map { $0 / 1e9 })),
            ratio: ratio, target: 0.30,
            note: "iperf3 TCP from node 3 to node 4: over the virtual LAN (TAP, MTU \(TAP.maximumMTU), RVIs on both fabrics) and over a veth pair joining the same namespaces")
    }

    func vlanPingScenario() throws -> VLANPingResult {
        let bed = try VLANBed(busyPoll: busyPoll, heartbeatUs: heartbeatUs)
        defer { bed.stop() }
        var lan: [UInt64] = [], veth: [UInt64] = []
        for round in 0..<rounds {
            for k in 0..<2 {
                let viaLAN = (k + round) % 2 == 0
                let s = try bed.ping(viaLAN ? bed.overLAN : bed.overVeth, count: count)
                if viaLAN { lan += s } else { veth += s }
            }
        }
        let tap = summarize(try bed.tapTurnaround(count: 100 * rounds))
        let p = summarize(lan), b = summarize(veth)
        let ratio = p.p50 / b.p50
        say(String(format: "vlan-ping: virtual LAN p50 %.1f µs p99 %.1f µs; veth p50 %.1f µs p99 %.1f µs; ratio %.2f (target ≤ 3)",
                     p.p50, p.p99, b.p50, b.p99, ratio))
        say(String(format: "  the kernel's own echo turnaround through a TAP device: p50 %.1f µs; twice that (both ends' kernels) is %.2f × veth before any fabric crossing",
                     tap.p50, 2 * tap.p50 / b.p50))
        var result = VLANPingResult(
            plexus: p, baseline: VLANPingResult.Baseline(veth: b, tapTurnaround: tap), ratio: ratio, target: 3.0,
            tapFloorRatio: 2 * tap.p50 / b.p50,
            note: "ping (ICMP echo, 2 ms apart) from node 3 to node 4; ratio is p50 over the virtual LAN ÷ p50 over the veth pair; "
                + (busyPoll ? "the processing nodes' engines busy-poll" : "the engines sleep between packets (each RTT wakes four engine threads)")
                + "; tap_turnaround: the kernel answering an echo written into a TAP device in node 4's namespace (write to reply read), which a virtual-LAN ping pays about twice; tap_floor_ratio = 2 × its p50 ÷ the veth p50; "
                + "bare_overlay: then, with the platform stopped, Benchmarks/calibration/tap-overlay.c (TAP ⇄ UDP, busy-polling, pinned to CPU 0 and 1) on the same namespaces and fabric, interleaved with the veth pair again (veth_with_overlay); floor_ratio = Plexus p50 ÷ bare overlay p50 (target ≤ 1.1 with --busy-poll)")
        // The floor: the platform stops (nothing else spins), the bare overlay runs on the same
        // fabric, interleaved with the veth pair.
        bed.stopPlatform()
        if let why = BareOverlay.unavailableReason {
            say("  bare overlay not measured: \(why)")
            result.floorRatio = nil
        } else {
            let overlay = try BareOverlay(on: bed.fabric)
            defer { overlay.stop() }
            var floor: [UInt64] = [], veth2: [UInt64] = []
            for round in 0..<rounds {
                for k in 0..<2 {
                    let viaOverlay = (k + round) % 2 == 0
                    let s = try bed.ping(viaOverlay ? overlay.address : bed.overVeth, count: count)
                    if viaOverlay { floor += s } else { veth2 += s }
                }
            }
            let f = summarize(floor), b2 = summarize(veth2)
            say(String(format: "  the bare TAP ⇄ UDP overlay on the same fabric (platform stopped): p50 %.1f µs p99 %.1f µs; veth p50 %.1f µs then; floor_ratio (Plexus ÷ overlay p50) %.2f%@",
                         f.p50, f.p99, b2.p50, p.p50 / f.p50, (busyPoll ? " (target ≤ 1.1)" : "") as NSString))
            result.baseline.bareOverlay = f
            result.baseline.vethWithOverlay = b2
            result.floorRatio = p.p50 / f.p50
            if busyPoll { result.floorTarget = 1.1 }
        }
        return result
    }

    /// An iperf3 stream with control node 1 stopped a third of the way in and fabric A failed at
    /// two thirds; the longest pause in frames reaching node 4 after each.
    func vlanFailoverScenario() throws -> VLANFailoverComparison {
        let bed = try VLANBed()
        defer { bed.stop() }
        let length = max(seconds, 3)
        func gap(_ body: () throws -> Void) throws -> Double {
            try bed.platform.ethernet(4) { $0.watchGaps = false; $0.watchGaps = true }
            try body()
            Thread.sleep(forTimeInterval: length / 3)
            return try bed.platform.ethernet(4) { Double($0.longestGapNanos) / 1e6 }
        }
        // A calm stream first: the pauses an undisturbed stream has.
        let calmTask = try BackgroundProcess(["ip", "netns", "exec", bed.fabric.namespace(3), "iperf3", "-c", bed.overLAN,
                                              "-t", String(length), "-J"])
        Thread.sleep(forTimeInterval: length / 3)
        let calm = try gap {}
        _ = calmTask.wait()
        Thread.sleep(forTimeInterval: 0.5)

        let out = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-iperf-\(getpid()).json")
        defer { try? FileManager.default.removeItem(at: out) }
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let handle = try FileHandle(forWritingTo: out)
        let client = try BackgroundProcess(["ip", "netns", "exec", bed.fabric.namespace(3), "iperf3", "-c", bed.overLAN,
                                            "-t", String(length), "-J"], output: handle)
        Thread.sleep(forTimeInterval: length / 3)
        let controlGap = try gap { bed.platform.stopControl(0) }
        let fabricGap = try gap { try bed.fabric.setFabric(.a, up: false) }
        let status = client.wait()
        try handle.close()
        try bed.fabric.setFabric(.a, up: true)
        let result = IPerf3Result(json: (try? String(contentsOf: out, encoding: .utf8)) ?? "")
        let survived = status == 0 && result != nil
        let worst = max(controlGap, fabricGap)
        say(String(format: "vlan-failover: longest gap %.2f ms after control node 1 died, %.2f ms after fabric A failed "
                     + "(undisturbed stream %.2f ms); TCP connection %@", controlGap, fabricGap, calm,
                     survived ? "survived" : "DID NOT survive"))
        return VLANFailoverComparison(
            plexus: VLANFailoverFigures(gapMs: worst, gapControlNodeMs: controlGap, gapFabricMs: fabricGap,
                                        tcpConnectionSurvived: survived, iperf3Exit: Int(status),
                                        gbitsPerSecond: (result?.receivedBitsPerSecond ?? 0) / 1e9,
                                        tcpRetransmits: result?.retransmits ?? -1),
            baseline: UndisturbedBaseline(undisturbedGapMs: calm),
            ratio: worst / 50.0, target: 50.0,
            note: "gap_ms: longest pause between frames reaching node 4's NIC after each failure; ratio is gap_ms ÷ the 50 ms target")
    }
}
