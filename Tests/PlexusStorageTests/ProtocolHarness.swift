import Foundation
import PlexusCore
import PlexusRCLAN
import PlexusStorage
import PlexusTestSupport
import Synchronization

/// The seeded contents of a disk: byte `o` of the device.
struct DiskPattern {
    let seed: UInt64
    func byte(_ o: UInt64) -> UInt8 {
        var g = SplitMix64(seed: seed ^ (o >> 3) &* 0x9E37_79B9_7F4A_7C15)
        return UInt8(truncatingIfNeeded: g.next() >> ((o & 7) * 8))
    }
}

/// The processor side of the protocol tests: the layer's delegate on the processing node. It
/// drives a seeded workload (write every chunk, then read every chunk back and compare), or
/// single commands, through a ``StorageInitiator`` over one host adapter per control node.
/// Engine-thread state; the test reads `report`.
final class ProcessorDriver: RVIDelegate, StorageCompletionHandler, @unchecked Sendable {
    static let chunkBytes = 32 * 1024
    static let slotBytes = chunkBytes + 8 * 4096
    let queueDepth: Int
    var initiator: StorageInitiator!
    var region = RegionKey(rawValue: 0)
    var pattern = DiskPattern(seed: 1)
    var target: UInt32 = 0
    var lun: UInt32 = 0
    var chunks = 0
    /// The next chunk to write (phase 1) or read (phase 2).
    var nextWrite = 0
    var nextRead = 0
    var running = false
    /// Per slot: the chunk and direction in flight (-1: free), and its segments.
    var slotChunk: [Int]
    var slotReading: [Bool]
    var slotSegments: [SegmentList]

    struct Report {
        var writesDone = 0, readsDone = 0, checked = 0, wrong = 0, failures: [String] = []
        /// The completions behind ``failures``.
        var failed: [StorageCompletion] = []
        var single: StorageCompletion?
        var singleData: [UInt8] = []
    }
    let report = Mutex(Report())

    init(queueDepth: Int) {
        self.queueDepth = queueDepth
        slotChunk = Array(repeating: -1, count: queueDepth + 1)
        slotReading = Array(repeating: false, count: queueDepth + 1)
        slotSegments = Array(repeating: SegmentList(), count: queueDepth + 1)
    }

    /// Slot `queueDepth` is for single commands.
    func slotBase(_ s: Int) -> UInt64 { UInt64(s * Self.slotBytes) }

    /// Four segments covering a chunk, of seeded lengths (multiples of 512), scattered in the
    /// slot with gaps between them.
    func segments(slot s: Int, chunk c: Int, reading: Bool) -> SegmentList {
        var g = SplitMix64(seed: pattern.seed &+ UInt64(c) &* 31 &+ (reading ? 7 : 0))
        var cuts = [0, Self.chunkBytes]
        while cuts.count < 5 {
            let cut = Int(1 + g.next() % UInt64(Self.chunkBytes / 512 - 1)) * 512
            if !cuts.contains(cut) { cuts.append(cut) }
        }
        cuts.sort()
        var list = SegmentList()
        for k in 0..<4 {
            list.append(Segment(key: region, offset: slotBase(s) + UInt64(cuts[k] + (k + 1) * 1024),
                                length: UInt32(cuts[k + 1] - cuts[k])))
        }
        return list
    }

    /// Copies (write) or compares (read) chunk `c`'s pattern bytes in the slot's segments;
    /// the number of wrong bytes.
    func pass(_ layer: RCLAN, segments: SegmentList, chunk c: Int, fill: Bool) -> Int {
        var wrong = 0
        try? layer.engine.withRegion(region) { r in
            var device = UInt64(c * Self.chunkBytes)
            for seg in segments {
                let p = r.baseAddress! + Int(seg.offset)
                for j in 0..<Int(seg.length) {
                    let b = pattern.byte(device + UInt64(j))
                    if fill { p.storeBytes(of: b, toByteOffset: j, as: UInt8.self) }
                    else if p.load(fromByteOffset: j, as: UInt8.self) != b { wrong += 1 }
                }
                device += UInt64(seg.length)
            }
        }
        return wrong
    }

    func layerTurn(_ layer: RCLAN) {
        guard running else { return }
        for s in 0..<queueDepth where slotChunk[s] < 0 {
            let reading: Bool
            let c: Int
            if nextWrite < chunks {
                c = nextWrite; reading = false
            } else if report.withLock({ $0.writesDone }) == chunks && nextRead < chunks {
                c = nextRead; reading = true
            } else {
                return
            }
            let segs = segments(slot: s, chunk: c, reading: reading)
            if !reading { _ = pass(layer, segments: segs, chunk: c, fill: true) }
            let blocks = UInt16(Self.chunkBytes / 512)
            let lba = UInt32(c * Self.chunkBytes / 512)
            let cdb: CDB = reading ? .read10(lba: lba, blocks: blocks) : .write10(lba: lba, blocks: blocks)
            do {
                try initiator.submit(cdb: cdb, target: target, lun: lun, direction: reading ? .dataIn : .dataOut,
                                     segments: segs, tag: UInt64(s), layer: layer)
            } catch {
                return
            }
            slotChunk[s] = c
            slotReading[s] = reading
            slotSegments[s] = segs
            if reading { nextRead += 1 } else { nextWrite += 1 }
        }
    }

    func completed(_ completion: StorageCompletion, layer: RCLAN) {
        let s = Int(completion.tag)
        if s == queueDepth {
            var data: [UInt8] = []
            if case .status(_, let residual, _, _) = completion.outcome, let seg = slotSegments[s].first {
                let n = Int(seg.length) - Int(residual)
                try? layer.engine.withRegion(region) { r in
                    data = Array(UnsafeRawBufferPointer(rebasing: r[Int(seg.offset)..<Int(seg.offset) + max(0, n)]))
                }
            }
            report.withLock { $0.single = completion; $0.singleData = data }
            return
        }
        let c = slotChunk[s]
        slotChunk[s] = -1
        guard completion.isGood else {
            report.withLock {
                $0.failures.append("chunk \(c) \(slotReading[s] ? "read" : "write"): \(completion.outcome)")
                $0.failed.append(completion)
            }
            return
        }
        if slotReading[s] {
            let wrong = pass(layer, segments: slotSegments[s], chunk: c, fill: false)
            report.withLock { r in
                r.readsDone += 1
                r.checked += Self.chunkBytes
                r.wrong += wrong
            }
        } else {
            report.withLock { $0.writesDone += 1 }
        }
    }

    /// Sends one command whose data (at most a slot) goes to or comes from slot `queueDepth`;
    /// `fill` writes its data first.
    func single(_ cdb: CDB, target: UInt32, lun: UInt32, direction: DataDirection, length: Int,
                fill: [UInt8] = [], layer: RCLAN) throws {
        report.withLock { $0.single = nil }
        let s = queueDepth
        var segs = SegmentList()
        if direction != .noData { segs.append(Segment(key: region, offset: slotBase(s), length: UInt32(length))) }
        slotSegments[s] = segs
        if !fill.isEmpty {
            try layer.engine.withRegion(region) { r in
                fill.withUnsafeBytes { r.baseAddress!.advanced(by: Int(slotBase(s))).copyMemory(from: $0.baseAddress!, byteCount: fill.count) }
            }
        }
        try initiator.submit(cdb: cdb, target: target, lun: lun, direction: direction, segments: segs,
                             tag: UInt64(s), layer: layer)
    }
}

/// Engines on loopback: one processing node and one or two control nodes, each control node a
/// ``StorageTarget`` serving the processor over two RVIs.
struct ProtocolRig {
    let processor: EngineThread
    let controls: [EngineThread]
    let driver: ProcessorDriver
    let targets: [StorageTarget]
    let adapters: [HostAdapter]
    let initiator: StorageInitiator

    /// `maps[k]`: the processor's map at control node k.
    /// `shared`: a control node (and its target) of another rig, served at VIs `controlVI`, +1.
    static func start(maps: [[StorageMapping]], queueDepth: Int = 8, timeout: Duration = .seconds(3),
                      processorNode: UInt8 = 1, firstControlNode: UInt8 = 2,
                      shared: (EngineThread, StorageTarget)? = nil, controlVI: UInt32 = 1,
                      sanTimeout: Duration = .seconds(5)) throws -> ProtocolRig {
        let driver = ProcessorDriver(queueDepth: queueDepth)
        let processor = try EngineThread.start(.loopback(node: processorNode)) { RCLAN(delegate: driver) }
        var controls: [EngineThread] = [], targets: [StorageTarget] = []
        if let shared {
            controls.append(shared.0)
            targets.append(shared.1)
        }
        for k in maps.indices where shared == nil {
            let t = try StorageTarget(slots: 8, slotSize: 256 * 1024, queueDepth: 32, transferTimeout: .seconds(4),
                                      sanTimeout: sanTimeout)
            targets.append(t)
            controls.append(try EngineThread.start(.loopback(node: firstControlNode + UInt8(k))) { RCLAN(delegate: t) })
        }
        let adapters = maps.indices.map { _ in HostAdapter(maxCommands: queueDepth + 1, timeout: timeout) }
        let initiator = StorageInitiator(adapters: adapters, maxCommands: queueDepth + 1)
        initiator.handler = driver
        driver.initiator = initiator
        for (k, c) in controls.enumerated() {
            try Self.connect(processor: processor, control: c, target: targets[k], map: maps[k], adapter: adapters[k],
                             processorVI: UInt32(2 * k + 1), controlVI: controlVI)
        }
        try processor.runAndWait { e in
            let layer = RCLAN.on(e)!
            layer.host(initiator)
            let writers = adapters.flatMap { [$0.data!] }
            driver.region = try layer.registerRegion(bytes: (queueDepth + 1) * ProcessorDriver.slotBytes, writers: writers)
            for a in adapters {
                try a.attach(command: a.command!, data: a.data!, region: driver.region, layer: layer)
            }
        }
        return ProtocolRig(processor: processor, controls: controls, driver: driver, targets: targets,
                           adapters: adapters, initiator: initiator)
    }

    /// Opens the storage RVIs between `processor` and `control` (``StorageLink``).
    static func connect(processor: EngineThread, control: EngineThread, target: StorageTarget, map: [StorageMapping],
                        adapter: HostAdapter, processorVI: UInt32, controlVI: UInt32) throws {
        try StorageLink.connect(processor: processor, control: control, target: target, map: map, adapter: adapter,
                                processorVI: processorVI, controlVI: controlVI)
    }

    func stop() {
        _ = processor.stopAndWait()
        for c in controls { _ = c.stopAndWait() }
    }

    /// Runs the seeded workload over `chunks` chunks and waits for it.
    func workload(seed: UInt64, chunks: Int, target: UInt32 = 0, lun: UInt32 = 0, seconds: Double = 120,
                  during: (() throws -> Void)? = nil) throws -> ProcessorDriver.Report {
        try processor.runAndWait { _ in
            driver.pattern = DiskPattern(seed: seed)
            driver.target = target
            driver.lun = lun
            driver.chunks = chunks
            driver.running = true
        }
        if let during {
            _ = waitUntil(seconds: seconds) { driver.report.withLock { $0.writesDone >= chunks / 3 || !$0.failures.isEmpty } }
            try during()
        }
        _ = waitUntil(seconds: seconds) {
            driver.report.withLock { $0.readsDone == chunks || !$0.failures.isEmpty }
        }
        return driver.report.withLock { $0 }
    }

    /// Sends one command and waits for its completion.
    func single(_ cdb: CDB, target: UInt32 = 0, lun: UInt32 = 0, direction: DataDirection = .noData, length: Int = 0,
                fill: [UInt8] = []) throws -> (StorageCompletion?, [UInt8]) {
        try processor.runAndWait { e in
            try driver.single(cdb, target: target, lun: lun, direction: direction, length: length, fill: fill,
                              layer: RCLAN.on(e)!)
        }
        _ = waitUntil(seconds: 10) { driver.report.withLock { $0.single != nil } }
        return driver.report.withLock { ($0.single, $0.singleData) }
    }

    /// A target's counters.
    func counters(_ k: Int) throws -> StorageTargetCounters {
        try controls[k].runAndWait { _ in targets[k].counters }
    }
}

/// A temporary directory of backing files.
final class Backing {
    let dir: URL
    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-vscsi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: dir) }

    /// A file of `bytes` zeros (sparse), or of `fill` repeated.
    func file(_ name: String, bytes: Int, fill: UInt8 = 0) throws -> String {
        let url = dir.appendingPathComponent(name)
        if fill == 0 {
            FileManager.default.createFile(atPath: url.path, contents: nil)
            let h = try FileHandle(forWritingTo: url)
            try h.truncate(atOffset: UInt64(bytes))
            try h.close()
        } else {
            try Data(repeating: fill, count: bytes).write(to: url)
        }
        return url.path
    }
}

// Engine-thread state: the tests touch these only inside `runAndWait` on their engine.
extension StorageTarget: @unchecked Sendable {}
extension HostAdapter: @unchecked Sendable {}
extension StorageInitiator: @unchecked Sendable {}
