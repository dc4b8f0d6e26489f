import CPlexus
import Dispatch
import Foundation
import PlexusCore
import Synchronization
import PlexusTestSupport
import Testing


/// Everything a test driver saw, readable from the test's thread.
final class Observed: Sendable {
    struct State {
        var received: [(vi: VI, bytes: [UInt8])] = []
        var fields: [ReliabilityFields] = []
        var sent = 0
        var sendFailures: [Int32] = []
        var immediates: [(vi: VI, value: UInt32, offset: UInt64, length: Int)] = []
        var refusals: [(vi: VI, error: RDMAError, key: RegionKey)] = []
        var timers: [UInt32] = []
    }
    let state = Mutex(State())
    func read<T>(_ f: (State) -> T) -> T { state.withLock { f($0) } }
}

/// A driver that records what arrives and keeps a receive posted for every frame it takes.
final class RecordingDriver: EngineDriver {
    let observed: Observed
    let repost: Bool
    init(_ observed: Observed, repost: Bool = true) {
        self.observed = observed
        self.repost = repost
    }
    func received(_ frame: consuming InboundFrame, engine: Engine) {
        let vi = frame.vi
        let bytes = frame.copyBytes()
        let fields = frame.fields
        observed.state.withLock {
            $0.received.append((vi, bytes))
            $0.fields.append(fields)
        }
        if repost { engine.postReceives(1, on: vi) }
    }
    func sendCompleted(on vi: VI, result: SendCompletion, engine: Engine) {
        observed.state.withLock {
            switch result {
            case .sent: $0.sent += 1
            case .failed(let e): $0.sendFailures.append(e)
            }
        }
    }
    func rdmaImmediate(_ immediate: UInt32, on vi: VI, region: RegionKey, offset: UInt64, length: Int, engine: Engine) {
        observed.state.withLock { $0.immediates.append((vi, immediate, offset, length)) }
    }
    func rdmaWriteRefused(on vi: VI, error: RDMAError, region: RegionKey, offset: UInt64, engine: Engine) {
        observed.state.withLock { $0.refusals.append((vi, error, region)) }
    }
    func timerFired(token: UInt32, engine: Engine) {
        observed.state.withLock { $0.timers.append(token) }
    }
}

/// A deterministic payload for message `i` of `size` bytes.
func pattern(_ i: Int, size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i &* 7 &+ 1) }
}

/// Two engines on loopback, node 1 and node 2, with VIs established between them on request.
struct Pair {
    let one: EngineThread
    let two: EngineThread
    let seen1 = Observed()
    let seen2 = Observed()

    init(configure: (inout EngineConfiguration) -> Void = { _ in }) throws {
        var c1 = EngineConfiguration.loopback(node: 1)
        var c2 = EngineConfiguration.loopback(node: 2)
        c1.poolFrames = 256
        c2.poolFrames = 256
        c1.receiveBuffers = 256
        c2.receiveBuffers = 256
        configure(&c1)
        configure(&c2)
        let s1 = seen1, s2 = seen2
        one = try EngineThread.start(c1) { RecordingDriver(s1) }
        two = try EngineThread.start(c2) { RecordingDriver(s2) }
    }

    func address(_ t: EngineThread, _ f: Fabric) -> FabricAddress {
        FabricAddress(t.info.ports[Int(f.rawValue)].address)!
    }

    /// Establishes VI `n` on fabric `f` at both ends (connected to each other), with `posted`
    /// receives at node 2.
    func connect(_ f: Fabric, _ n: UInt32, posted: Int = 1_000_000) throws {
        try one.control.establishAndWait(VI(f, n), peer: address(two, f), remoteVI: n)
        try two.control.establishAndWait(VI(f, n), peer: address(one, f), remoteVI: n)
        try two.runAndWait { $0.postReceives(posted, on: VI(f, n)) }
        try one.runAndWait { $0.postReceives(posted, on: VI(f, n)) }
    }

    func stop() -> (ShutdownReport, ShutdownReport) { (one.stopAndWait(), two.stopAndWait()) }
}

/// Sends `payload` from `thread` on `vi` (copying it into a pool frame: a test convenience).
func send(_ thread: EngineThread, _ vi: VI, _ payload: [UInt8]) throws {
    try thread.runAndWait { engine in
        guard var f = engine.takeFrame() else { throw PlexusError(.resourceExhausted, "pool empty") }
        f.setPayload(payload)
        try engine.send(f, on: vi)
    }
}

/// A plain UDP socket for sending hand-made datagrams at a port.
struct RawSocket: ~Copyable {
    let fd: Int32
    init(bindTo ip: String) {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = inet_addr(ip)
        _ = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
    func send(_ bytes: [UInt8], to a: FabricAddress) {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = a.port.bigEndian
        sa.sin_addr.s_addr = a.ip.bigEndian
        _ = bytes.withUnsafeBytes { b in
            withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }
    var address: FabricAddress {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return FabricAddress(ip: UInt32(bigEndian: sa.sin_addr.s_addr), port: UInt16(bigEndian: sa.sin_port))
    }
    deinit { close(fd) }
}
