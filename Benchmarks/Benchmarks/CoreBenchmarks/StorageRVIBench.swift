// The storage protocol end to end under the allocation gate: a processor's initiator and host
// adapter on one engine, a control node's storage target on another (a 16 MiB file in /tmp
// through the engine's block I/O), the command and data RVIs between them on loopback. Each item
// is a 4 KiB WRITE(10) (CMD, BUF, the processor's RDMA WRITE, TRAN, the backend write, STAT)
// followed by a READ(10) of the same blocks (CMD, the backend read, the target's RDMA WRITE,
// STAT), one command in flight, checked against what was written.

import Benchmark
import Foundation
import PlexusCore
import PlexusRCLAN
import PlexusStorage
import Synchronization

final class StorageStreamState: Sendable {
    let requested = Atomic<Int>(0)
    let done = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
}

/// The processor: posts write-then-read pairs while `requested` is ahead, one command at a time.
final class StorageStreamDriver: RVIDelegate, StorageCompletionHandler {
    static let blockBytes = 4096
    static let blocks = 4096  // a 16 MiB device
    let state: StorageStreamState
    var initiator: StorageInitiator?
    var region = RegionKey(rawValue: 0)
    var pairs = 0
    var inFlight = false
    var reading = false

    init(state: StorageStreamState) { self.state = state }

    func layerTurn(_ layer: RCLAN) {
        guard !inFlight, let initiator, pairs < state.requested.load(ordering: .acquiring) else { return }
        if !reading { stamp(layer) }
        submit(initiator, layer: layer)
    }

    func submit(_ initiator: StorageInitiator, layer: RCLAN) {
        let lba = UInt32((pairs % Self.blocks) * (Self.blockBytes / 512))
        var segments = SegmentList()
        segments.append(Segment(key: region, offset: reading ? UInt64(Self.blockBytes) : 0, length: UInt32(Self.blockBytes)))
        let blocks = UInt16(Self.blockBytes / 512)
        do {
            try initiator.submit(cdb: reading ? .read10(lba: lba, blocks: blocks) : .write10(lba: lba, blocks: blocks),
                                 target: 0, lun: 0, direction: reading ? .dataIn : .dataOut, segments: segments,
                                 tag: UInt64(pairs), layer: layer)
            inFlight = true
        } catch {
            state.failures.add(1, ordering: .relaxed)
        }
    }

    func completed(_ completion: StorageCompletion, layer: RCLAN) {
        inFlight = false
        guard completion.isGood else {
            state.failures.add(1, ordering: .relaxed)
            return
        }
        if reading {
            // The block read back is the block written: the pair's number in its first word.
            let same = (try? layer.engine.withRegion(region) { r in
                r.load(fromByteOffset: Self.blockBytes, as: Int.self) == pairs
            }) ?? false
            if !same { state.failures.add(1, ordering: .relaxed) }
            reading = false
            pairs += 1
            state.done.store(pairs, ordering: .releasing)
        } else {
            reading = true
        }
        if let initiator, pairs < state.requested.load(ordering: .acquiring) {
            if !reading { stamp(layer) }
            submit(initiator, layer: layer)
        }
    }

    /// Writes the next pair's number into the block to write.
    func stamp(_ layer: RCLAN) {
        let n = pairs
        try? layer.engine.withRegion(region) { r in r.storeBytes(of: n, toByteOffset: 0, as: Int.self) }
    }
}

final class StorageStreamBed: StreamBed {
    let state = StorageStreamState()
    let processor: EngineThread
    let control: EngineThread
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-bench-storage-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let disk = directory.appendingPathComponent("disk").path
        FileManager.default.createFile(atPath: disk, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: disk))
        try h.truncate(atOffset: UInt64(StorageStreamDriver.blocks * StorageStreamDriver.blockBytes))
        try h.close()
        let state = self.state
        var pc = EngineConfiguration.loopback(node: 1)
        pc.name = "storage-processor"
        var cc = EngineConfiguration.loopback(node: 2)
        cc.name = "storage-control"
        // Each engine's services are made on its thread and reached there through its layer.
        processor = try EngineThread.start(pc) { RCLAN(delegate: StorageStreamDriver(state: state)) }
        control = try EngineThread.start(cc) {
            RCLAN(delegate: try! StorageTarget(slots: 4, slotSize: 64 * 1024, queueDepth: 8))
        }
        func rviPath(_ to: EngineThread, _ local: UInt32, _ remote: UInt32) -> RVIPath {
            RVIPath(localA: local, localB: local, peerA: FabricAddress(to.info.ports[0].address)!,
                    peerB: FabricAddress(to.info.ports[1].address)!, remoteA: remote, remoteB: remote)
        }
        let toProcessor = (rviPath(processor, 1, 1), rviPath(processor, 2, 2))
        let toControl = (rviPath(control, 1, 1), rviPath(control, 2, 2))
        let map = [StorageMapping(target: 0, lun: 0, path: disk)]
        try control.runAndWait { e in
            let layer = RCLAN.on(e)!
            let target = layer.delegate as! StorageTarget
            let command = try layer.open(toProcessor.0)
            let data = try layer.open(toProcessor.1)
            try target.addProcessor(command: command, data: data, map: map, layer: layer)
        }
        try processor.runAndWait { e in
            let layer = RCLAN.on(e)!
            let driver = layer.delegate as! StorageStreamDriver
            let adapter = HostAdapter(maxCommands: 4)
            let initiator = StorageInitiator(adapters: [adapter], maxCommands: 4)
            initiator.handler = driver
            layer.host(adapter)
            layer.host(initiator)
            let command = try layer.open(toControl.0, service: adapter)
            let data = try layer.open(toControl.1, service: adapter)
            adapter.setRVIs(command: command, data: data)
            driver.region = try layer.registerRegion(bytes: 2 * StorageStreamDriver.blockBytes, writers: [data])
            try adapter.attach(command: command, data: data, region: driver.region, layer: layer)
            driver.initiator = initiator
        }
    }

    /// Asks for `count` more write-then-read pairs and waits, without allocating, until they are done.
    func deliver(_ count: Int) {
        let target = state.requested.add(count, ordering: .releasing).newValue
        let state = self.state
        spinWait(timeout: .seconds(30), until: {
            state.done.load(ordering: .acquiring) >= target || state.failures.load(ordering: .relaxed) != 0
        }) {
            fail("timed out waiting for pair \(target): \(state.done.load(ordering: .relaxed)) done")
        }
        if state.failures.load(ordering: .relaxed) != 0 {
            fail("\(state.failures.load(ordering: .relaxed)) commands failed or read back wrong")
        }
    }

    func fail(_ why: String) -> Never {
        report("CoreBenchmarks: \(why)\n")
        fatalError("CoreBenchmarks: \(why)")
    }

    func check(_ name: String) {}

    func stop() {
        processor.stopAndWait()
        control.stopAndWait()
        try? FileManager.default.removeItem(at: directory)
    }
}
