import Foundation
import PlexusCore
import PlexusRCLAN
import PlexusStorage
import PlexusTestSupport
import Testing

/// Checks that the backing file at `path` holds `pattern` over its first `bytes`; the number of
/// wrong bytes.
private func wrongBytes(in path: String, pattern: DiskPattern, bytes: Int) throws -> Int {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    var wrong = 0
    data.withUnsafeBytes { d in
        for o in 0..<min(bytes, d.count) where d[o] != pattern.byte(UInt64(o)) { wrong += 1 }
    }
    return wrong + max(0, bytes - data.count)
}

@Suite("SCSI over RVIs: storage target, host adapter and re-issue", .serialized, .requiresIOUring)
struct StorageProtocolTests {
    @Test("a processor writes a seeded pattern with scatter-gather, reads it back, and the file holds it")
    func writeReadBack() throws {
        let backing = try Backing()
        let path = try backing.file("disk0", bytes: 8 << 20)
        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: path)]])
        defer { rig.stop() }
        let seed: UInt64 = 0x5C51
        let chunks = 128
        let r = try rig.workload(seed: seed, chunks: chunks)
        let fileWrong = try wrongBytes(in: path, pattern: DiskPattern(seed: seed), bytes: chunks * ProcessorDriver.chunkBytes)
        let c = try rig.counters(0)
        print("SCSI over RVIs: seed \(seed), \(chunks) writes and \(r.readsDone) reads of \(ProcessorDriver.chunkBytes) "
              + "bytes in 4 segments each; \(r.checked) bytes checked, \(r.wrong) wrong, \(fileWrong) wrong in the file, "
              + "\(r.failures.count) lost; target: \(c.writes) writes, \(c.reads) reads, \(c.transfers) TRANs, "
              + "\(c.rdmaWrites) RDMA WRITEs")
        #expect(r.failures.isEmpty, "\(r.failures.prefix(3))")
        #expect(r.writesDone == chunks && r.readsDone == chunks && r.wrong == 0 && fileWrong == 0)
        #expect(c.writes == UInt64(chunks) && c.reads == UInt64(chunks) && c.transfers == UInt64(4 * chunks))
    }

    @Test("INQUIRY, READ CAPACITY, TEST UNIT READY, SYNCHRONIZE CACHE and listLUNs")
    func commandsWithoutTheBackendData() throws {
        let backing = try Backing()
        let path = try backing.file("disk0", bytes: 4 << 20)
        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: path),
                                                StorageMapping(target: 0, lun: 3, path: path, access: .readOnly)]])
        defer { rig.stop() }
        let (tur, _) = try rig.single(.testUnitReady())
        #expect(tur?.isGood == true)
        let (inq, inqData) = try rig.single(.inquiry(allocationLength: 96), direction: .dataIn, length: 96)
        #expect(inq?.isGood == true)
        #expect(inqData.count >= 36 && inqData[0] == 0x00)
        #expect(String(decoding: inqData[8..<14], as: UTF8.self) == "PLEXUS")
        let (cap, capData) = try rig.single(.readCapacity10(), direction: .dataIn, length: 8)
        #expect(cap?.isGood == true)
        let parsed = capData.withUnsafeBytes { ReadCapacityData(parsing10: $0.bytes) }
        #expect(parsed?.blockCount == UInt64((4 << 20) / 512) && parsed?.blockSize == 512)
        let (sync, _) = try rig.single(.synchronizeCache10())
        #expect(sync?.isGood == true)
        // listLUNs, a protocol-control operation, through the adapter directly.
        try rig.processor.runAndWait { e in
            let layer = RCLAN.on(e)!
            rig.driver.report.withLock { $0.single = nil }
            rig.adapters[0].handler = rig.driver
            let s = rig.driver.queueDepth
            var segs = SegmentList()
            segs.append(Segment(key: rig.driver.region, offset: rig.driver.slotBase(s), length: 64))
            rig.driver.slotSegments[s] = segs
            try rig.adapters[0].submitControl(.listLUNs, segments: segs, tag: UInt64(s), layer: layer)
        }
        #expect(waitUntil(seconds: 10) { rig.driver.report.withLock { $0.single != nil } })
        let (list, listData) = rig.driver.report.withLock { ($0.single, $0.singleData) }
        #expect(list?.isGood == true)
        #expect(listData == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0])
        print("Commands without backend data: TEST UNIT READY, INQUIRY (\(inqData.count) bytes), READ CAPACITY "
              + "(\(parsed?.blockCount ?? 0) blocks), SYNCHRONIZE CACHE and listLUNs (\(listData.count / 8) LUNs) answered")
    }

    @Test("an unmapped LUN is ILLEGAL REQUEST and never reaches a backend; a read-only mapping refuses writes")
    func accessControl() throws {
        let backing = try Backing()
        let path = try backing.file("disk0", bytes: 1 << 20, fill: 0xAB)
        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: path, access: .readOnly)]])
        defer { rig.stop() }
        let zeros = [UInt8](repeating: 0, count: 4096)
        for cdb in [CDB.read10(lba: 0, blocks: 8), .write10(lba: 0, blocks: 8), .testUnitReady(), .inquiry(allocationLength: 36)] {
            let isWrite = cdb[0] == SCSIOperation.write10
            let direction: DataDirection = cdb[0] == SCSIOperation.testUnitReady ? .noData : isWrite ? .dataOut : .dataIn
            let (c, _) = try rig.single(cdb, lun: 7, direction: direction, length: direction == .noData ? 0 : 4096,
                                        fill: isWrite ? zeros : [])
            #expect(c?.sense?.key == .illegalRequest && c?.sense?.additional == .logicalUnitNotSupported, "\(cdb)")
        }
        let (w, _) = try rig.single(.write10(lba: 0, blocks: 8), direction: .dataOut, length: 4096, fill: zeros)
        #expect(w?.sense?.key == .dataProtect)
        let (r, data) = try rig.single(.read10(lba: 0, blocks: 8), direction: .dataIn, length: 4096)
        #expect(r?.isGood == true && data == [UInt8](repeating: 0xAB, count: 4096))
        let c = try rig.counters(0)
        let file = try Data(contentsOf: URL(fileURLWithPath: path))
        print("Access control: \(c.unmappedRefused) commands for an unmapped LUN refused, \(c.dataProtectRefused) write "
              + "refused with DATA PROTECT; backend saw \(c.reads) reads and \(c.writes) writes")
        #expect(c.unmappedRefused == 4 && c.dataProtectRefused == 1)
        #expect(c.reads == 1 && c.writes == 0 && file.allSatisfy { $0 == 0xAB })
    }

    @Test("a map replaced at the target: the old (target, LUN) is ILLEGAL REQUEST at once, the new one serves its file")
    func mapReplaced() throws {
        let backing = try Backing()
        let first = try backing.file("first", bytes: 1 << 20, fill: 0x11)
        let second = try backing.file("second", bytes: 2 << 20, fill: 0x22)
        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: first)]])
        defer { rig.stop() }
        let (before, a) = try rig.single(.read10(lba: 0, blocks: 8), direction: .dataIn, length: 4096)
        #expect(before?.isGood == true && a == [UInt8](repeating: 0x11, count: 4096))
        // What a failover does: the processor loses this map (it is fenced) ...
        let target = rig.targets[0]
        try rig.controls[0].runAndWait { e in try target.setMap(ofProcessor: 0, [], layer: RCLAN.on(e)!) }
        let (fenced, _) = try rig.single(.read10(lba: 0, blocks: 8), direction: .dataIn, length: 4096)
        #expect(fenced?.sense?.key == .illegalRequest && fenced?.sense?.additional == .logicalUnitNotSupported)
        // ... or gains another personality's: the same (target, LUN) now reaches the other file.
        try rig.controls[0].runAndWait { e in
            try target.setMap(ofProcessor: 0, [StorageMapping(target: 0, lun: 0, path: second)], layer: RCLAN.on(e)!)
        }
        let (after, b) = try rig.single(.read10(lba: 0, blocks: 8), direction: .dataIn, length: 4096)
        #expect(after?.isGood == true && b == [UInt8](repeating: 0x22, count: 4096))
        let (cap, capData) = try rig.single(.readCapacity10(), direction: .dataIn, length: 8)
        let parsed = capData.withUnsafeBytes { ReadCapacityData(parsing10: $0.bytes) }
        #expect(cap?.isGood == true && parsed?.blockCount == UInt64((2 << 20) / 512))
        // A map that cannot be opened is refused, naming the file, and the map in place stays.
        let missing = backing.dir.path + "/missing"
        #expect(throws: StorageSetupError.self) {
            try rig.controls[0].runAndWait { e in
                try target.setMap(ofProcessor: 0, [StorageMapping(target: 0, lun: 0, path: missing)],
                                  layer: RCLAN.on(e)!)
            }
        }
        let (still, c) = try rig.single(.read10(lba: 0, blocks: 8), direction: .dataIn, length: 4096)
        #expect(still?.isGood == true && c == [UInt8](repeating: 0x22, count: 4096))
        let counters = try rig.counters(0)
        #expect(counters.mapChanges == 2 && counters.unmappedRefused == 1)
    }

    @Test("a LUN one control node does not serve (yet) goes to the other: redirected and counted; unserved by both, ILLEGAL REQUEST")
    func redirectedToTheOtherControlNode() throws {
        let backing = try Backing()
        let path = try backing.file("disk0", bytes: 1 << 20, fill: 0x5A)
        // Control node 1 has not got the personality's map yet (a failover in progress there).
        let rig = try ProtocolRig.start(maps: [[], [StorageMapping(target: 0, lun: 0, path: path)]])
        defer { rig.stop() }
        let (r, data) = try rig.single(.read10(lba: 0, blocks: 8), direction: .dataIn, length: 4096)
        #expect(r?.isGood == true && data == [UInt8](repeating: 0x5A, count: 4096))
        let (other, _) = try rig.single(.read10(lba: 0, blocks: 8), lun: 9, direction: .dataIn, length: 4096)
        #expect(other?.sense?.key == .illegalRequest && other?.sense?.additional == .logicalUnitNotSupported)
        let initiator = rig.initiator
        let (redirected, reissued, preferred) = try rig.processor.runAndWait { _ in
            (initiator.redirected, initiator.reissued, initiator.preferred)
        }
        #expect(redirected == 2 && reissued == 0 && preferred == 0, "redirected \(redirected), re-issued \(reissued)")
    }

    @Test("malformed CMDs are counted and answered, never crash")
    func malformed() throws {
        let backing = try Backing()
        let path = try backing.file("disk0", bytes: 1 << 20)
        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: path)]])
        defer { rig.stop() }
        var good = try StorageMessage.command(StorageCommand(sequence: 9, target: 0, lun: 0, direction: .noData,
                                                             cdb: .testUnitReady())).encoded()
        good[27] = 1  // a reserved byte
        let bad = good
        try rig.processor.runAndWait { e in
            let layer = RCLAN.on(e)!
            try layer.send(bad, on: rig.adapters[0].command!)
            try layer.send([1, 2, 3], on: rig.adapters[0].command!)
        }
        #expect(waitUntil(seconds: 10) { ((try? rig.counters(0).malformed) ?? 0) == 2 })
        let c = try rig.counters(0)
        let (tur, _) = try rig.single(.testUnitReady())
        let a = try rig.processor.runAndWait { _ in rig.adapters[0].counters }
        print("Malformed: \(c.malformed) refused, \(c.malformedAnswered) answered; the target still serves")
        #expect(c.malformed == 2 && c.malformedAnswered == 1 && tur?.isGood == true && a.stale == 1)
    }

    @Test("under 2 % loss on both fabrics nothing is lost")
    func throughLoss() throws {
        let backing = try Backing()
        let path = try backing.file("disk0", bytes: 8 << 20)
        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: path)]])
        defer { rig.stop() }
        for (k, t) in ([rig.processor] + rig.controls).enumerated() {
            try t.control.setFaultsAndWait(FaultPlan(seed: 40 + UInt64(k), dropPercent: 2), on: .a)
            try t.control.setFaultsAndWait(FaultPlan(seed: 50 + UInt64(k), dropPercent: 2), on: .b)
        }
        let seed: UInt64 = 0x1055
        let chunks = 192
        let r = try rig.workload(seed: seed, chunks: chunks)
        let fileWrong = try wrongBytes(in: path, pattern: DiskPattern(seed: seed), bytes: chunks * ProcessorDriver.chunkBytes)
        let retransmissions = try rig.processor.runAndWait { e in
            RCLAN.on(e)!.rvis(of: rig.adapters[0]).reduce(UInt64(0)) { $0 + (RCLAN.on(e)!.statistics($1)?.retransmissions ?? 0) }
        }
        let a = try rig.processor.runAndWait { _ in rig.adapters[0].counters }
        print("SCSI over RVIs with 2 % loss on both fabrics: seed \(seed), \(r.writesDone) writes and \(r.readsDone) reads "
              + "of \(ProcessorDriver.chunkBytes) bytes; \(r.checked) bytes checked, \(r.wrong) wrong, \(fileWrong) wrong in "
              + "the file, \(r.failures.count) lost, \(a.timeouts) timeouts; \(retransmissions) retransmissions by the processor")
        #expect(r.failures.isEmpty, "\(r.failures.prefix(3))")
        #expect(r.writesDone == chunks && r.readsDone == chunks && r.wrong == 0 && fileWrong == 0)
        #expect(retransmissions > 0, "the loss should have cost retransmissions")
    }

    @Test("two processors with the same (target, LUN) mapped to different files see different data")
    func twoProcessors() throws {
        let backing = try Backing()
        let one = try backing.file("one", bytes: 4 << 20), two = try backing.file("two", bytes: 4 << 20)
        let rig1 = try ProtocolRig.start(maps: [[StorageMapping(target: 2, lun: 5, path: one)]], processorNode: 1)
        defer { rig1.stop() }
        let rig2 = try ProtocolRig.start(maps: [[StorageMapping(target: 2, lun: 5, path: two)]], processorNode: 3,
                                         shared: (rig1.controls[0], rig1.targets[0]), controlVI: 3)
        defer { _ = rig2.processor.stopAndWait() }
        let chunks = 64
        let r1 = try rig1.workload(seed: 0xA1, chunks: chunks, target: 2, lun: 5)
        let r2 = try rig2.workload(seed: 0xB2, chunks: chunks, target: 2, lun: 5)
        let bytes = chunks * ProcessorDriver.chunkBytes
        let w1 = try wrongBytes(in: one, pattern: DiskPattern(seed: 0xA1), bytes: bytes)
        let w2 = try wrongBytes(in: two, pattern: DiskPattern(seed: 0xB2), bytes: bytes)
        let cross = try wrongBytes(in: two, pattern: DiskPattern(seed: 0xA1), bytes: bytes)
        print("Two processors, (T 2, L 5) each: \(r1.readsDone + r2.readsDone) chunks read back, \(r1.wrong + r2.wrong) "
              + "bytes wrong, \(w1 + w2) wrong in their files, \(r1.failures.count + r2.failures.count) lost; processor 2's "
              + "file differs from processor 1's pattern in \(cross) of \(bytes) bytes")
        #expect(r1.failures.isEmpty && r2.failures.isEmpty)
        #expect(r1.readsDone == chunks && r2.readsDone == chunks && r1.wrong == 0 && r2.wrong == 0)
        #expect(w1 == 0 && w2 == 0 && cross > bytes / 2)
    }

    @Test("the control node in use is stopped mid-stream and every command completes through the other")
    func reissueToTheOtherControlNode() throws {
        let backing = try Backing()
        let path = try backing.file("shared", bytes: 16 << 20)
        let map = [StorageMapping(target: 0, lun: 0, path: path)]
        let rig = try ProtocolRig.start(maps: [map, map], timeout: .seconds(1))
        defer { rig.stop() }
        let seed: UInt64 = 0xFA11
        let chunks = 384
        let r = try rig.workload(seed: seed, chunks: chunks, seconds: 120) {
            _ = rig.controls[0].stopAndWait()
        }
        let fileWrong = try wrongBytes(in: path, pattern: DiskPattern(seed: seed), bytes: chunks * ProcessorDriver.chunkBytes)
        let (reissued, failed, preferred) = try rig.processor.runAndWait { _ in
            (rig.initiator.reissued, rig.initiator.failed, rig.initiator.preferred)
        }
        let a0 = try rig.processor.runAndWait { _ in rig.adapters[0].counters }
        let c1 = try rig.counters(1)
        print("Re-issue: seed \(seed), control node 1 stopped after a third of \(chunks) writes; \(r.writesDone) writes and "
              + "\(r.readsDone) reads completed, \(r.checked) bytes checked, \(r.wrong) wrong, \(fileWrong) wrong in the file, "
              + "\(r.failures.count) lost; \(reissued) commands re-issued (\(a0.timeouts) timeouts, \(a0.rviFailures) RVI "
              + "failures, \(a0.resets) resets at adapter 1), \(failed) failed everywhere; control node 2 served "
              + "\(c1.writes) writes and \(c1.reads) reads")
        #expect(r.failures.isEmpty, "\(r.failures.prefix(3))")
        #expect(r.writesDone == chunks && r.readsDone == chunks && r.wrong == 0 && fileWrong == 0)
        #expect(reissued > 0 && failed == 0 && preferred == 1)
        #expect(c1.reads == UInt64(chunks))
    }

    @Test("a processor that stops mid-stream leaves no slot held once its RVIs fail or its TRANs time out; the target serves on")
    func processorStops() throws {
        let backing = try Backing()
        let path = try backing.file("disk0", bytes: 8 << 20)
        let rig1 = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: path)]], processorNode: 1)
        defer { rig1.stop() }
        try rig1.processor.runAndWait { _ in
            rig1.driver.pattern = DiskPattern(seed: 3)
            rig1.driver.chunks = 1_000_000
            rig1.driver.running = true
        }
        #expect(waitUntil(seconds: 30) { rig1.driver.report.withLock { $0.writesDone >= 20 } })
        _ = rig1.processor.stopAndWait()
        let drained = waitUntil(seconds: 15) {
            ((try? rig1.controls[0].runAndWait { _ in rig1.targets[0].inFlight.active }) ?? 1) == 0
        }
        let c = try rig1.counters(0)
        // A second processor on the same target is served as before.
        let rig2 = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: path)]], processorNode: 3,
                                         shared: (rig1.controls[0], rig1.targets[0]), controlVI: 3)
        defer { _ = rig2.processor.stopAndWait() }
        let r = try rig2.workload(seed: 4, chunks: 32)
        print("Processor stopped mid-stream: \(c.abandoned) commands abandoned at the target, slots drained: \(drained); "
              + "a second processor then wrote and read back \(r.readsDone) chunks, \(r.wrong) bytes wrong")
        #expect(r.failures.isEmpty && r.readsDone == 32 && r.wrong == 0)
        #expect(drained)
    }
}
