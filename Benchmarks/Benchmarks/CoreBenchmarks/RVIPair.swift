// Two in-process engines on loopback with the RCLAN layer and one RVI between them: the
// reliable path (sequence numbers, acknowledgements, held frames, coalescing, heartbeats) under
// the same allocation gate as the raw VI path. As in LoopbackPair, the measured thread only moves
// atomics; node 1's layer notices a raised `requested` on its next turn (busy-poll).

import Benchmark
import MallocInterposerSwift
import PlexusCore
import PlexusRCLAN
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

final class RVIStreamState: Sendable {
    let payloadBytes: Int
    let coalesce: Bool
    /// Whole frames as RDMA WRITEs into node 2's region (`coalesce` false).
    let rdma: Bool
    let region = Atomic<UInt32>(0)
    let requested = Atomic<Int>(0)
    let delivered = Atomic<Int>(0)
    let acknowledged = Atomic<Int>(0)
    let badMessages = Atomic<Int>(0)

    init(payloadBytes: Int, coalesce: Bool, rdma: Bool = false) {
        self.payloadBytes = payloadBytes
        self.coalesce = coalesce
        self.rdma = rdma
    }
}

/// Node 1: posts messages while `requested` is ahead, as small copied messages (coalesced) or as
/// whole frames (zero-copy).
final class RVIStreamSender: RVIDelegate {
    let state: RVIStreamState
    var rvi: RVI?
    var sent = 0
    let scratch: UnsafeMutableRawBufferPointer

    init(state: RVIStreamState) {
        self.state = state
        scratch = .allocate(byteCount: FrameLayout.maxPayload, alignment: 8)
        scratch.initializeMemory(as: UInt8.self, repeating: 0x5A)
    }

    deinit { scratch.deallocate() }

    func layerTurn(_ layer: RCLAN) {
        guard let rvi else { return }
        let requested = state.requested.load(ordering: .acquiring)
        while sent < requested {
            if state.coalesce {
                do {
                    _ = try layer.send(UnsafeRawBufferPointer(rebasing: scratch[0..<state.payloadBytes]).bytes, on: rvi)
                } catch { break }
            } else {
                guard layer.canSend(on: rvi), var f = layer.engine.takeFrame() else { break }
                f.length = state.payloadBytes
                var frame: Frame? = consume f
                do {
                    if state.rdma {
                        _ = try layer.rdmaWrite(&frame, on: rvi, region: RegionKey(rawValue: state.region.load(ordering: .relaxed)),
                                                offset: 0)
                    } else {
                        _ = try layer.send(&frame, on: rvi)
                    }
                } catch { break }
            }
            sent += 1
        }
    }

    func acknowledged(on rvi: RVI, through: UInt64, layer: RCLAN) {
        state.acknowledged.store(Int(through), ordering: .releasing)
    }
}

/// Node 2: counts messages, or RDMA WRITEs landed in its region.
final class RVIStreamReceiver: RVIDelegate {
    let state: RVIStreamState
    init(state: RVIStreamState) { self.state = state }

    func rdmaWriteLanded(on rvi: RVI, region: RegionKey, offset: UInt64, length: Int, immediate: UInt32?,
                         layer: RCLAN) {
        if length != state.payloadBytes { state.badMessages.add(1, ordering: .relaxed) }
        state.delivered.add(1, ordering: .releasing)
    }

    func rdmaWriteRefused(on rvi: RVI, region: RegionKey, offset: UInt64, length: Int, error: RDMAError,
                          by refuser: RDMARefuser, layer: RCLAN) {
        state.badMessages.add(1, ordering: .relaxed)
    }

    func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        if message.byteCount != state.payloadBytes { state.badMessages.add(1, ordering: .relaxed) }
        state.delivered.add(1, ordering: .releasing)
    }
}

final class RVILoopbackPair: Sendable, StreamBed {
    let state: RVIStreamState
    let sender: EngineThread
    let receiver: EngineThread
    static let timeout: Duration = .seconds(10)

    init(payloadBytes: Int, coalesce: Bool, rdma: Bool = false) throws {
        let state = RVIStreamState(payloadBytes: payloadBytes, coalesce: coalesce, rdma: rdma)
        self.state = state
        var rc = EngineConfiguration.loopback(node: 2)
        rc.name = "rvi-rx"
        receiver = try EngineThread.start(rc) { RCLAN(delegate: RVIStreamReceiver(state: state)) }
        var sc = EngineConfiguration.loopback(node: 1)
        sc.name = "rvi-tx"
        sc.pollMode = .busyPoll
        sender = try EngineThread.start(sc) { RCLAN(delegate: RVIStreamSender(state: state)) }
        func address(_ t: EngineThread, _ i: Int) -> FabricAddress { FabricAddress(t.info.ports[i].address)! }
        let toReceiver = RVIPath(localA: 1, localB: 1, peerA: address(receiver, 0), peerB: address(receiver, 1),
                                 remoteA: 1, remoteB: 1)
        let toSender = RVIPath(localA: 1, localB: 1, peerA: address(sender, 0), peerB: address(sender, 1),
                               remoteA: 1, remoteB: 1)
        try receiver.runAndWait { e in
            let layer = RCLAN.on(e)!
            let rvi = try layer.open(toSender)
            if rdma {
                let key = try layer.registerRegion(bytes: payloadBytes, writers: [rvi])
                state.region.store(key.rawValue, ordering: .releasing)
            }
        }
        try sender.runAndWait { e in
            let layer = RCLAN.on(e)!
            (layer.delegate as! RVIStreamSender).rvi = try layer.open(toReceiver)
        }
    }

    /// Asks for `count` more messages and waits, without allocating, until node 2 has them all
    /// and node 1 has their acknowledgement.
    func deliver(_ count: Int) {
        let target = state.requested.add(count, ordering: .releasing).newValue
        let state = self.state
        spinWait(timeout: Self.timeout, until: {
            state.delivered.load(ordering: .acquiring) >= target && state.acknowledged.load(ordering: .acquiring) >= target
        }) {
            fail("timed out waiting for message \(target): delivered \(state.delivered.load(ordering: .relaxed)), "
                 + "acknowledged \(state.acknowledged.load(ordering: .relaxed))")
        }
        if state.badMessages.load(ordering: .relaxed) != 0 { fail("messages arrived damaged") }
    }

    func fail(_ why: String) -> Never {
        report("CoreBenchmarks: \(why)\n")
        fatalError("CoreBenchmarks: \(why)")
    }

    func check(_ name: String) {}

    func stop() {
        sender.stopAndWait()
        receiver.stopAndWait()
    }
}

/// Registers an RVI benchmark: 1000 messages per iteration, each iteration checked on its own
/// for allocations (0 allowed), like the VI benchmarks.
func rviBenchmark(_ name: String, payloadBytes: Int, coalesce: Bool, rdma: Bool = false) {
    streamBenchmark(name, unit: rdma ? "writes" : "messages") {
        try RVILoopbackPair(payloadBytes: payloadBytes, coalesce: coalesce, rdma: rdma)
    }
}
