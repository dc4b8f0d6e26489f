import CPlexus
#if canImport(Glibc)
import Glibc
#endif

/// Faults to inject under one fabric of an engine: seeded, so a run can be reproduced exactly.
///
/// The layer sits between the VIs and the port's socket. On the way out it can drop,
/// duplicate, delay or reorder frames. Both ways it can take the whole leg down or cut it off
/// from chosen peer addresses (a partition). A partition set on one node therefore cuts both
/// directions. Everything it does is counted (`PortCounters.fault*`). With no plan set, the cost
/// is one nil check per frame.
public struct FaultPlan: Sendable, Hashable, CustomStringConvertible {
    /// Seed of the generator deciding which frames are hit.
    public var seed: UInt64 = 1
    /// Percentage of outgoing frames dropped (0...100).
    public var dropPercent: Double = 0
    /// Percentage of outgoing frames sent twice.
    public var duplicatePercent: Double = 0
    /// Percentage of outgoing frames held back by a random 0.2–2 ms, so later frames overtake them.
    public var reorderPercent: Double = 0
    /// Extra delay for every outgoing frame.
    public var delay: Duration = .zero
    /// The leg is down: nothing goes out and nothing that arrives is accepted.
    public var down = false
    /// Peer port addresses this leg cannot reach, nor hear from.
    public var partitioned: Set<FabricAddress> = []

    public init(seed: UInt64 = 1, dropPercent: Double = 0, duplicatePercent: Double = 0, reorderPercent: Double = 0,
                delay: Duration = .zero, down: Bool = false, partitioned: Set<FabricAddress> = []) {
        self.seed = seed
        self.dropPercent = dropPercent
        self.duplicatePercent = duplicatePercent
        self.reorderPercent = reorderPercent
        self.delay = delay
        self.down = down
        self.partitioned = partitioned
    }

    /// Parses `drop=5,dup=1,reorder=2,delay=1ms,seed=42,down,partition=127.0.1.2:7000+127.0.1.3:7000`.
    /// Percentages may carry a `%`; delays take `us`, `ms` or `s`.
    public init(parsing text: String) throws(PlexusError) {
        self.init()
        func bad(_ why: String) -> PlexusError { PlexusError(.configuration, "fault plan '\(text)': \(why)") }
        for item in text.split(separator: ",").map({ String($0).trimmedWhitespace }) where !item.isEmpty {
            let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
            let key = kv[0], value = kv.count > 1 ? kv[1] : nil
            func percent() throws(PlexusError) -> Double {
                guard let v = value, let p = Double(v.hasSuffix("%") ? String(v.dropLast()) : v), (0...100).contains(p)
                else { throw bad("\(key) needs a percentage in 0...100") }
                return p
            }
            switch key {
            case "drop": dropPercent = try percent()
            case "dup", "duplicate": duplicatePercent = try percent()
            case "reorder": reorderPercent = try percent()
            case "down": down = true
            case "seed":
                guard let v = value, let s = UInt64(v) else { throw bad("seed needs a whole number") }
                seed = s
            case "delay":
                guard let v = value else { throw bad("delay needs a duration such as 500us, 2ms or 1s") }
                let units: [(suffix: String, seconds: Double)] = [("us", 1e-6), ("ms", 1e-3), ("s", 1)]
                guard let unit = units.first(where: { v.hasSuffix($0.suffix) }),
                      let n = Double(String(v.dropLast(unit.suffix.count))), n >= 0, n * unit.seconds <= 10
                else { throw bad("delay needs a duration such as 500us, 2ms or 1s (at most 10 s)") }
                let nanos: Double = n * unit.seconds * 1e9
                delay = Duration.nanoseconds(Int64(nanos))
            case "partition":
                guard let v = value else { throw bad("partition needs peer addresses ip:port joined by +") }
                for a in v.split(separator: "+") {
                    guard let addr = FabricAddress(String(a)) else { throw bad("'\(a)' is not ip:port") }
                    partitioned.insert(addr)
                }
            default:
                throw bad("unknown fault '\(key)' (known: drop, dup, reorder, delay, down, partition, seed)")
            }
        }
    }

    public var description: String {
        var parts: [String] = []
        if dropPercent > 0 { parts.append("drop=\(dropPercent)%") }
        if duplicatePercent > 0 { parts.append("dup=\(duplicatePercent)%") }
        if reorderPercent > 0 { parts.append("reorder=\(reorderPercent)%") }
        if delay > .zero {
            let (sec, atto) = delay.components
            parts.append("delay=\(sec * 1_000_000 + atto / 1_000_000_000_000)us")
        }
        if down { parts.append("down") }
        if !partitioned.isEmpty { parts.append("partition=" + partitioned.map(\.description).sorted().joined(separator: "+")) }
        parts.append("seed=\(seed)")
        return parts.joined(separator: ",")
    }
}

/// A port's live fault state: the plan, its generator, and frames held back.
final class FaultState {
    let plan: FaultPlan
    var rng: SplitMix64
    let partitionKeys: [UInt64]
    let dropBelow: UInt64, duplicateBelow: UInt64, reorderBelow: UInt64
    let delayNanos: UInt64

    /// Frames held back (delayed, reordered, or to be dropped/duplicated at the next turn).
    struct Held {
        var due: UInt64
        var slot: UInt32
        var drop: Bool
        var entry: UnsafeMutablePointer<VIEntry>
        /// The socket address the frame goes to (the entry's peer, or one of its alternates).
        var destination: UnsafeMutableRawPointer
        var header: FrameHeader
    }
    let held: UnsafeMutablePointer<Held>
    let capacity: Int
    var count = 0

    init(plan: FaultPlan, fabric: Fabric, capacity: Int) {
        self.plan = plan
        rng = SplitMix64(seed: plan.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(fabric.rawValue) &+ 1)
        partitionKeys = plan.partitioned.map { Self.key(ip: $0.ip.bigEndian, port: $0.port.bigEndian) }
        func threshold(_ p: Double) -> UInt64 { p >= 100 ? .max : UInt64(p / 100 * Double(UInt64.max)) }
        dropBelow = plan.dropPercent > 0 ? threshold(plan.dropPercent) : 0
        duplicateBelow = plan.duplicatePercent > 0 ? threshold(plan.duplicatePercent) : 0
        reorderBelow = plan.reorderPercent > 0 ? threshold(plan.reorderPercent) : 0
        let (s, atto) = plan.delay.components
        delayNanos = UInt64(max(0, s)) * 1_000_000_000 + UInt64(max(0, atto / 1_000_000_000))
        self.capacity = capacity
        held = .allocate(capacity: capacity)
    }

    deinit { held.deallocate() }

    @inline(__always)
    func next() -> UInt64 { rng.next() }

    @inline(__always)
    static func key(ip: UInt32, port: UInt16) -> UInt64 { UInt64(ip) << 16 | UInt64(port) }

    /// Whether traffic to or from this socket address is cut.
    @inline(__always)
    func cuts(_ sa: UnsafePointer<sockaddr_in>) -> Bool {
        if plan.down { return true }
        if partitionKeys.isEmpty { return false }
        let k = Self.key(ip: sa.pointee.sin_addr.s_addr, port: sa.pointee.sin_port)
        for p in partitionKeys where p == k { return true }
        return false
    }

    func hold(_ h: Held) -> Bool {
        guard count < capacity else { return false }
        held[count] = h
        count += 1
        return true
    }
}

@available(*, unavailable)
extension FaultState: Sendable {}

extension Engine {
    /// Sets (or, with nil, clears) the faults injected under `fabric`. Frames held back by the
    /// previous plan keep their due times under a new plan; clearing the plan sends them now.
    public func setFaults(_ plan: FaultPlan?, on fabric: Fabric) {
        let port = self.port(fabric)
        let old = port.faults
        guard let plan else {
            if let old {
                releaseHeldFrames(old, port: port, all: true)
            }
            port.faults = nil
            return
        }
        let new = FaultState(plan: plan, fabric: fabric, capacity: 2 * configuration.poolFrames + 16)
        if let old {
            for i in 0..<old.count { _ = new.hold(old.held[i]) }
            old.count = 0
        }
        port.faults = new
        if new.count > 0 { ensureFaultTimer() }
    }

    /// The faults currently set on `fabric`.
    public func faults(on fabric: Fabric) -> FaultPlan? { port(fabric).faults?.plan }

    /// Applies the port's plan to one outgoing frame. Nothing completes here (never inside a
    /// driver's call to send): dropped and duplicated frames are settled at the next turn.
    func injectFaults(_ f: FaultState, slot: UInt32, header: FrameHeader, port: Port, entry e: UnsafeMutablePointer<VIEntry>,
                      to destination: UnsafeMutableRawPointer) {
        let now = nowNanos()
        var drop = f.cuts(UnsafeRawPointer(destination).assumingMemoryBound(to: sockaddr_in.self))
        if !drop && f.dropBelow > 0 && f.next() < f.dropBelow { drop = true }
        var due = now + f.delayNanos
        if !drop && f.reorderBelow > 0 && f.next() < f.reorderBelow {
            due += 200_000 + f.next() % 1_800_000
            port.counters.faultReordered &+= 1
        }
        if drop {
            port.counters.faultDropped &+= 1
        } else if f.delayNanos > 0 {
            port.counters.faultDelayed &+= 1
        }
        pool.meta[Int(slot)].pendingOps += 1
        if !f.hold(.init(due: drop ? now : due, slot: slot, drop: drop, entry: e, destination: destination, header: header)) {
            // No room to hold it: send it now rather than lose it silently.
            pool.meta[Int(slot)].pendingOps -= 1
            transmitNow(slot: slot, header: header, port: port, entry: e, to: destination)
            return
        }
        if !drop && f.duplicateBelow > 0 && f.next() < f.duplicateBelow {
            pool.meta[Int(slot)].pendingOps += 1
            if f.hold(.init(due: due, slot: slot, drop: false, entry: e, destination: destination, header: header)) {
                port.counters.faultDuplicated &+= 1
            } else {
                pool.meta[Int(slot)].pendingOps -= 1
            }
        }
        ensureFaultTimer()
    }

    /// Releases held frames that are due (called every turn), or all of them.
    func releaseHeldFrames(_ f: FaultState, port: Port, all: Bool = false) {
        guard f.count > 0 else { return }
        let now = nowNanos()
        // Stable: frames due together leave in the order they were sent.
        let n = f.count
        var kept = 0
        for i in 0..<n {
            let h = f.held[i]
            if h.due > now && !all && !stopping {
                f.held[kept] = h
                kept += 1
                continue
            }
            if h.drop {
                completeOp(slot: h.slot, res: 0)  // lost on the wire: to the sender, a send like any other
            } else {
                transmitNow(slot: h.slot, header: h.header, port: port, entry: h.entry, to: h.destination)
                completeOp(slot: h.slot, res: 0)  // the hold's own count; transmitNow added its own
            }
        }
        // Frames held while releasing (none today: release never injects) would sit past n.
        for i in n..<f.count {
            f.held[kept] = f.held[i]
            kept += 1
        }
        f.count = kept
    }

    /// Keeps a short ring timer armed while frames are held, so a sleeping engine releases them.
    func ensureFaultTimer() {
        guard !faultTimerArmed, !stopping else { return }
        faultTimerSpec.pointee = __kernel_timespec(tv_sec: 0, tv_nsec: 100_000)
        let sqe = nextSQE()
        io_uring_prep_timeout(sqe, faultTimerSpec, 0, 0)
        io_uring_sqe_set_data64(sqe, Self.data(.faultTimer, 0))
        faultTimerArmed = true
        inflight += 1
    }

    var framesHeldByFaults: Int { (portA.faults?.count ?? 0) + (portB.faults?.count ?? 0) }
}

/// Monotonic nanoseconds (`CLOCK_MONOTONIC`): the one clock of timelines, timers and tests.
@inline(__always)
public func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
