import Dispatch
import Foundation
import PlexusCore
import PlexusRCLAN
import Synchronization
import Testing


/// The sizes and contents of a seeded message stream: message `n` of stream `seed` always has
/// the same size (1 … 16896 bytes, mostly small) and the same bytes.
public struct MessageShape: Sendable {
    public var seed: UInt64
    public var minimumSize = 1
    public var maximumSize = FrameLayout.maxPayload

    public init(seed: UInt64, minimumSize: Int = 1, maximumSize: Int = FrameLayout.maxPayload) {
        self.seed = seed
        self.minimumSize = minimumSize
        self.maximumSize = maximumSize
    }

    public func size(_ n: UInt64) -> Int {
        var g = SplitMix64(seed: seed ^ (n &* 0x9E37_79B9_7F4A_7C15))
        let r = g.next()
        let span: Int
        switch r % 100 {
        case 0..<60: span = 256
        case 60..<90: span = 4096
        default: span = maximumSize
        }
        let s = minimumSize + Int((r >> 8) % UInt64(max(1, min(span, maximumSize) - minimumSize + 1)))
        return min(max(s, minimumSize), maximumSize)
    }

    @inline(__always)
    public func byte(_ n: UInt64, _ k: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: n &* 0x9E37 &+ UInt64(k) &* 131 &+ seed)
    }

    /// Writes message `n` into `buffer` (at least 16896 bytes); returns its size. Messages of 8
    /// bytes or more start with `n`, little-endian, so a receiver can name what it got.
    public func fill(_ n: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let s = size(n)
        for k in 0..<s { buffer[k] = byte(n, k) }
        if s >= 8 { buffer.storeBytes(of: n.littleEndian, as: UInt64.self) }
        return s
    }
}

/// What a stream saw, readable from the test's thread.
public struct StreamReport: Sendable {
    public var posted: UInt64 = 0
    public var delivered: UInt64 = 0
    public var ackedThrough: UInt64 = 0
    public var outOfOrder: UInt64 = 0
    public var duplicated: UInt64 = 0
    public var corrupt: UInt64 = 0
    public var failed: [Range<UInt64>] = []
    public var failedCount: UInt64 { failed.reduce(0) { $0 + UInt64($1.count) } }
    public var events: [(ms: Double, event: RVIEvent)] = []
    /// The longest time between two deliveries, after the first (milliseconds).
    public var longestGapMs: Double = 0
    public var windowFull: UInt64 = 0
    public var firstError: String?
}

/// An RVI delegate that sends the messages of one seeded stream and checks the peer's: every
/// message must arrive exactly once, in order, with the right size and bytes.
public final class MessageStream: RVIDelegate {
    public let outgoing: MessageShape
    public let incoming: MessageShape
    public let report = Mutex(StreamReport())
    public let startedAt = nowNanos()
    public var rvi: RVI?
    /// Messages to send in total (the test raises it).
    public var target: UInt64 = 0
    public var posted: UInt64 = 0
    public var expected: UInt64 = 1
    /// When the incoming stream does not start at 1 (a peer restarted and failed some), the
    /// receiver takes the first index it sees (messages of 8 bytes or more carry it).
    public var resynchronise = false
    public var lastDelivery: UInt64 = 0
    public let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: FrameLayout.maxPayload, alignment: 8)

    public init(outgoing: MessageShape, incoming: MessageShape) {
        self.outgoing = outgoing
        self.incoming = incoming
    }

    deinit { scratch.deallocate() }

    public func layerTurn(_ layer: RCLAN) {
        guard let rvi else { return }
        var full: UInt64 = 0
        while posted < target {
            let n = posted + 1
            let s = outgoing.fill(n, into: scratch)
            do {
                _ = try layer.send(UnsafeRawBufferPointer(rebasing: scratch[0..<s]).bytes, on: rvi)
            } catch {
                full += 1
                break
            }
            posted = n
        }
        let p = posted
        report.withLock {
            $0.posted = p
            $0.windowFull &+= full
        }
    }

    public func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        let now = nowNanos()
        message.withUnsafeBytes { buf in
            var n = expected
            if buf.count >= 8 {
                let carried = UInt64(littleEndian: buf.loadUnaligned(as: UInt64.self))
                if resynchronise {
                    n = carried
                    resynchronise = false
                }
                if carried != n {
                    report.withLock {
                        if carried < n { $0.duplicated += 1 } else { $0.outOfOrder += 1 }
                        if $0.firstError == nil { $0.firstError = "expected message \(n), got \(carried)" }
                    }
                    if carried > n { expected = carried + 1 }
                    return
                }
            }
            let size = incoming.size(n)
            var ok = buf.count == size
            if ok {
                // The first and last 64 bytes (every byte of small messages).
                for k in 0..<min(size, 64) where k >= 8 || size < 8 {
                    if buf[k] != incoming.byte(n, k) { ok = false; break }
                }
                if size > 64 {
                    for k in max(8, size - 64)..<size where buf[k] != incoming.byte(n, k) { ok = false; break }
                }
            }
            let gap = lastDelivery == 0 ? 0 : Double(now - lastDelivery) / 1e6
            lastDelivery = now
            report.withLock {
                $0.delivered += 1
                if gap > $0.longestGapMs { $0.longestGapMs = gap }
                if !ok {
                    $0.corrupt += 1
                    if $0.firstError == nil { $0.firstError = "message \(n): \(buf.count) bytes, expected \(size)" }
                }
            }
            expected = n + 1
        }
    }

    public func acknowledged(on rvi: RVI, through: UInt64, layer: RCLAN) {
        report.withLock { $0.ackedThrough = through }
    }

    public func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN) {
        report.withLock { $0.failed.append(messages) }
    }

    public func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {
        let ms = Double(nowNanos() - startedAt) / 1e6
        if case .peerRestarted = event { resynchronise = true }
        report.withLock { $0.events.append((ms, event)) }
    }

    public func read() -> StreamReport { report.withLock { $0 } }
}

extension MessageStream: @unchecked Sendable {}  // engine-thread state; tests read only `report`

/// Two engines on loopback with an RCLAN layer each and one RVI between them, each end running
/// a seeded ``MessageStream``.
public final class RVIPair: @unchecked Sendable {
    public var one: EngineThread
    public var two: EngineThread
    public var streamOne: MessageStream
    public var streamTwo: MessageStream
    public let layerConfiguration: RCLANConfiguration
    public let policy: LoadBalancing
    public let seed: UInt64
    public var configTwo: EngineConfiguration

    public init(seed: UInt64, layer: RCLANConfiguration = RCLANConfiguration(), policy: LoadBalancing = .alternate,
         minimumSize: Int = 1, maximumSize: Int = FrameLayout.maxPayload,
         engine configure: (inout EngineConfiguration) -> Void = { _ in }) throws {
        self.seed = seed
        layerConfiguration = layer
        self.policy = policy
        var c1 = EngineConfiguration.loopback(node: 1)
        var c2 = EngineConfiguration.loopback(node: 2)
        configure(&c1)
        configure(&c2)
        let s1 = MessageShape(seed: seed, minimumSize: minimumSize, maximumSize: maximumSize)
        let s2 = MessageShape(seed: seed &+ 1, minimumSize: minimumSize, maximumSize: maximumSize)
        streamOne = MessageStream(outgoing: s1, incoming: s2)
        streamTwo = MessageStream(outgoing: s2, incoming: s1)
        let d1 = streamOne, d2 = streamTwo
        one = try EngineThread.start(c1) { try! RCLAN(configuration: layer, delegate: d1) }
        two = try EngineThread.start(c2) { try! RCLAN(configuration: layer, delegate: d2) }
        // Run node 2 on the same ports again when it restarts.
        configTwo = c2
        configTwo.fabricA = Self.address(two, .a)
        configTwo.fabricB = Self.address(two, .b)
        try openBoth()
    }

    public static func address(_ t: EngineThread, _ f: Fabric) -> FabricAddress {
        FabricAddress(t.info.ports[Int(f.rawValue)].address)!
    }

    public func path(from me: EngineThread, to peer: EngineThread) -> RVIPath {
        RVIPath(localA: 1, localB: 1, peerA: Self.address(peer, .a), peerB: Self.address(peer, .b),
                remoteA: 1, remoteB: 1)
    }

    public func open(_ t: EngineThread, to peer: EngineThread) throws {
        let p = path(from: t, to: peer)
        let policy = self.policy
        try t.runAndWait { e in
            let layer = RCLAN.on(e)!
            (layer.delegate as! MessageStream).rvi = try layer.open(p, policy: policy)
        }
    }

    public func openBoth() throws {
        try open(one, to: two)
        try open(two, to: one)
    }

    /// Sets how many messages each end sends in total.
    public func send(_ count: UInt64, from t: EngineThread) throws {
        try t.runAndWait { e in (RCLAN.on(e)!.delegate as! MessageStream).target = count }
    }

    public func statistics(_ t: EngineThread) throws -> RVIStatistics {
        try t.runAndWait { e in RCLAN.on(e)!.statistics(RVI(id: 0))! }
    }

    public func faults(_ t: EngineThread, _ f: Fabric, _ plan: FaultPlan?) throws {
        try t.control.setFaultsAndWait(plan, on: f)
    }

    /// Stops node 2 and starts a new one on the same ports (a new epoch), with a fresh stream
    /// that takes whatever index arrives first.
    public func restartTwo() throws {
        _ = two.stopAndWait()
        let s2 = MessageStream(outgoing: streamTwo.outgoing, incoming: streamTwo.incoming)
        s2.resynchronise = true
        streamTwo = s2
        let layer = layerConfiguration
        two = try EngineThread.start(configTwo) { try! RCLAN(configuration: layer, delegate: s2) }
        try open(two, to: one)
    }

    public func stop() -> (ShutdownReport, ShutdownReport) { (one.stopAndWait(), two.stopAndWait()) }
}

/// Expects `r` to show every one of `count` messages delivered once, in order, intact, and none
/// failed.
public func expectClean(_ r: StreamReport, _ count: UInt64, _ label: String,
                        sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.delivered == count, "\(label): delivered \(r.delivered) of \(count)", sourceLocation: sourceLocation)
    #expect(r.corrupt == 0, "\(label): \(r.firstError ?? "")", sourceLocation: sourceLocation)
    #expect(r.outOfOrder == 0, "\(label): \(r.firstError ?? "")", sourceLocation: sourceLocation)
    #expect(r.duplicated == 0, "\(label): \(r.firstError ?? "")", sourceLocation: sourceLocation)
    #expect(r.failed.isEmpty, "\(label): failed \(r.failed)", sourceLocation: sourceLocation)
}
