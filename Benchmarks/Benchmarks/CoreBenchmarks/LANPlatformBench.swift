// A whole virtual LAN in this process: two control nodes (each running the virtual LAN server)
// and three processing nodes on VLAN 10, every node on its own engine thread, with the in-process
// frame backend. Node 3 sends Ethernet frames from its engine thread (`VirtualEthernet.onTurn`,
// on each turn: the engines block, so the acknowledgements of its frames wake it to send more;
// five spinning engines on two cores would starve the control nodes into leg failovers);
// nodes 4 and 5 count what their NICs receive (`onFrame`). The measured thread only moves
// atomics, so every allocation counted is the platform's own: the driver's send and receive
// paths and, for broadcast and multicast, the server's switching and cloning.

import Benchmark
import Foundation
import PlexusCore
import PlexusNode
import PlexusNamespaces
import PlexusLAN
import PlexusRCLAN
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

final class LANStreamState: Sendable {
    let requested = Atomic<Int>(0)
    /// Frames handed to nodes 4 and 5 (a broadcast or multicast frame counts once per node).
    let delivered = Atomic<Int>(0)
    let badFrames = Atomic<Int>(0)
    let copiesPerFrame: Int
    let frameBytes: Int
    init(copiesPerFrame: Int, frameBytes: Int) {
        self.copiesPerFrame = copiesPerFrame
        self.frameBytes = frameBytes
    }
}

/// Node 3's sender: keeps at most `window` frames in flight (so the server never has to drop a
/// copy for want of room) and retries on the next turn when an RVI is full.
final class LANSender {
    let state: LANStreamState
    let nic: MACAddress
    let frame: UnsafeMutableRawBufferPointer
    var sent = 0
    let window = 64

    init(state: LANStreamState, nic: MACAddress, destination: MACAddress) {
        self.state = state
        self.nic = nic
        frame = .allocate(byteCount: state.frameBytes, alignment: 8)
        frame.initializeMemory(as: UInt8.self, repeating: 0x5A)
        for (i, b) in (destination.bytes + nic.bytes).enumerated() { frame[i] = b }
        frame[12] = 0x88  // EtherType 0x88B5, "local experimental"
        frame[13] = 0xB5
    }

    deinit { frame.deallocate() }

    func turn(_ eth: VirtualEthernet, _ layer: RCLAN) {
        let requested = state.requested.load(ordering: .acquiring)
        let delivered = state.delivered.load(ordering: .acquiring) / state.copiesPerFrame
        while sent < requested && sent - delivered < window {
            do { try eth.transmit(UnsafeRawBufferPointer(frame), from: nic, layer: layer) } catch { return }
            sent += 1
        }
    }
}

enum LANTraffic: String {
    case broadcast, multicast, unicastDirect
    static let group = MACAddress(rawValue: 0x01_00_5E_01_02_03)
}

final class LANBed: Sendable, StreamBed {
    let state: LANStreamState
    let platform: LANPlatformBox
    let traffic: LANTraffic
    static let vlan = VLANID(10)!

    init(traffic: LANTraffic, frameBytes: Int) throws {
        self.traffic = traffic
        let state = LANStreamState(copiesPerFrame: traffic == .unicastDirect ? 1 : 2, frameBytes: frameBytes)
        self.state = state
        let macState = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-lanbench-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: macState) }
        let p = try LANPlatform(PlatformDefinition(controlNodes: [1, 2], processingNodes: [3, 4, 5], vlans: [Self.vlan: [3, 4, 5]]),
                                macState: macState, nodePollMode: .blocking)
        platform = LANPlatformBox(p)
        guard let from = p.mac(node: 3, vlan: Self.vlan), let to = p.mac(node: 4, vlan: Self.vlan) else {
            throw BenchError("no NICs on VLAN 10")
        }
        let length = frameBytes
        for n: NodeNumber in [4, 5] {
            let nic = p.mac(node: n, vlan: Self.vlan)!
            try p.nodes[n]!.runAndWait { e in
                let layer = RCLAN.on(e)!
                let eth = layer.service(VirtualEthernet.self)!
                eth.onFrame = { _, frame in
                    if frame.byteCount != length { state.badFrames.add(1, ordering: .relaxed) }
                    state.delivered.add(1, ordering: .releasing)
                }
                if traffic == .multicast { try eth.join(LANTraffic.group, nic: nic, layer: layer) }
            }
        }
        if traffic == .multicast {
            // Both servers have the two members before the first frame.
            for k in 0..<2 {
                guard waitUntil(seconds: 10, { (try? p.server(k) { $0.table.groups[Self.vlan]?[LANTraffic.group]?.count }) == 2 })
                else { throw BenchError("control node \(k + 1) did not learn the group's members") }
            }
        }
        let destination: MACAddress = switch traffic {
        case .broadcast: .broadcast
        case .multicast: LANTraffic.group
        case .unicastDirect: to
        }
        try p.ethernet(3) { eth in
            let sender = LANSender(state: state, nic: from, destination: destination)
            eth.onTurn = { eth, layer in sender.turn(eth, layer) }
        }
    }

    /// Asks for `count` more frames and waits, without allocating, until every copy arrived.
    func deliver(_ count: Int) {
        let target = state.requested.add(count, ordering: .releasing).newValue * state.copiesPerFrame
        let state = self.state
        spinWait(timeout: .seconds(10), until: { state.delivered.load(ordering: .acquiring) >= target }) {
            fail("timed out waiting for \(target) frames: \(state.delivered.load(ordering: .relaxed)) arrived")
        }
        if state.badFrames.load(ordering: .relaxed) != 0 { fail("frames arrived damaged") }
    }

    /// What went through the servers and the driver, for the teardown check.
    func check(_ name: String) {
        do {
            let direct = try platform.value.ethernet(3) { $0.sentDirect }
            let viaServers = try platform.value.ethernet(3) { $0.sentToServers }
            let dropped = try (0..<2).map { k in try platform.value.server(k) { $0.copiesDropped } }.reduce(0, +)
            if dropped != 0 { fail("\(name): the servers dropped \(dropped) copies") }
            switch traffic {
            case .unicastDirect: if direct == 0 || viaServers != 0 { fail("\(name): \(direct) sent direct, \(viaServers) via servers") }
            case .broadcast, .multicast: if viaServers == 0 { fail("\(name): nothing went through the servers") }
            }
        } catch {
            fail("\(name): \(error)")
        }
    }

    func fail(_ why: String) -> Never {
        report("CoreBenchmarks: \(why)\n")
        fatalError("CoreBenchmarks: \(why)")
    }

    func stop() { platform.value.stop() }
}

/// The platform, handed between the benchmark's setup, iterations and teardown (one thread runs
/// them one after another).
final class LANPlatformBox: @unchecked Sendable {
    let value: LANPlatform
    init(_ value: LANPlatform) { self.value = value }
}

/// Registers a virtual LAN benchmark: 1000 frames per iteration from node 3, each iteration
/// checked on its own for allocations (0 allowed).
func lanBenchmark(_ name: String, traffic: LANTraffic, frameBytes: Int) {
    streamBenchmark(name, unit: "frames") { try LANBed(traffic: traffic, frameBytes: frameBytes) }
}
