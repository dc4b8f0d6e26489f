import Foundation
import PlexusCore
import PlexusRCLAN
import PlexusStorage
import PlexusTestSupport
import Testing

@Suite("iSCSI URLs")
struct ISCSIURLTests {
    @Test("a LUN's URL parses into portal, target and LUN")
    func parses() throws {
        let u = try ISCSIURL("iscsi://127.0.0.1:3261/iqn.2026-12.org.example:disk/3")
        #expect(u.host == "127.0.0.1" && u.port == 3261 && u.target == "iqn.2026-12.org.example:disk" && u.lun == 3)
        #expect(u.portal == "127.0.0.1:3261")
        let d = try ISCSIURL("iscsi://san.example/iqn.2026-12.org.example:disk/0")
        #expect(d.port == 3260 && d.description == "iscsi://san.example:3260/iqn.2026-12.org.example:disk/0")
        let v6 = try ISCSIURL("iscsi://[::1]:3262/eui.0123456789abcdef/1")
        #expect(v6.host == "::1" && v6.portal == "[::1]:3262")
    }

    @Test("a bad URL is refused naming what is wrong", arguments: [
        ("nbd://host/iqn.a/1", "does not start with iscsi://"),
        ("iscsi://host/iqn.a", "path parts"),
        ("iscsi:///iqn.a/1", "no host"),
        ("iscsi://host:0/iqn.a/1", "port '0'"),
        ("iscsi://host:99999/iqn.a/1", "port '99999'"),
        ("iscsi://host/disk/1", "is not an iSCSI name"),
        ("iscsi://host/iqn.a/x", "LUN 'x'"),
        ("iscsi://host/iqn.a/70000", "LUN '70000'"),
        ("iscsi://user%pw@host/iqn.a/1", "credentials"),
        ("iscsi://[::1/iqn.a/1", "closing ]"),
    ])
    func refuses(url: String, reason: String) {
        do {
            _ = try ISCSIURL(url)
            Issue.record("\(url) was accepted")
        } catch {
            #expect(error.description.contains(reason), "\(error)")
            #expect(error.description.contains(url))
        }
    }
}

@Suite("iSCSI SAN backend: a storage target's LUN on tgtd through libiscsi", .serialized, .requiresIOUring,
       .requiresRoot, .requiresTool("tgtd"), .requiresTool("tgtadm"))
struct ISCSIBackendTests {
    static let diskBytes = 8 << 20

    @Test("a processor writes a seeded pattern to a LUN on the SAN, reads it back, and tgtd's backing file holds it; the map replaced with a file closes the session")
    func writeReadBack() throws {
        let lun = try SANDisk(bytes: Self.diskBytes)
        defer { lun.stop() }  // keeps the LUN (its directory, its tgtd) to the end of the test
        let dir = lun.dir, file = lun.file, san = lun.san
        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: san.url)]])
        defer { rig.stop() }
        let seed: UInt64 = 0x15C5
        let chunks = 128
        let clock = ContinuousClock()
        let t0 = clock.now
        let r = try rig.workload(seed: seed, chunks: chunks)
        let elapsed = clock.now - t0
        let pattern = DiskPattern(seed: seed)
        let bytes = fileBytes(file, 0..<chunks * ProcessorDriver.chunkBytes)
        var fileWrong = bytes.count == chunks * ProcessorDriver.chunkBytes ? 0 : 1
        for (o, b) in bytes.enumerated() where b != pattern.byte(UInt64(o)) { fileWrong += 1 }
        let (cap, capData) = try rig.single(.readCapacity10(), direction: .dataIn, length: 8)
        let parsed = capData.withUnsafeBytes { ReadCapacityData(parsing10: $0.bytes) }
        let (sync, _) = try rig.single(.synchronizeCache10())
        let c = try rig.counters(0)
        let status = try rig.controls[0].runAndWait { _ in rig.targets[0].sanStatus }
        let mib = Double(2 * chunks * ProcessorDriver.chunkBytes) / 1_048_576
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("iSCSI backend: seed \(seed), \(r.writesDone) writes and \(r.readsDone) reads of "
              + "\(ProcessorDriver.chunkBytes) bytes through tgtd (\(String(format: "%.1f", mib / seconds)) MiB/s "
              + "both ways, unbenchmarked debug build); \(r.checked) bytes checked, \(r.wrong) wrong, \(fileWrong) wrong "
              + "in tgtd's file; READ CAPACITY \(parsed?.blockCount ?? 0) blocks of \(parsed?.blockSize ?? 0); target: "
              + "\(c.writes) writes, \(c.reads) reads, \(c.flushes) flushes, \(c.sanCommandErrors) SAN errors; \(status)")
        #expect(r.failures.isEmpty, "\(r.failures.prefix(3))")
        #expect(r.writesDone == chunks && r.readsDone == chunks && r.wrong == 0 && fileWrong == 0)
        #expect(cap?.isGood == true && parsed?.blockCount == UInt64(Self.diskBytes / 512) && parsed?.blockSize == 512)
        #expect(sync?.isGood == true && c.flushes == 1)
        #expect(c.writes == UInt64(chunks) && c.reads == UInt64(chunks) && c.sanFailures == 0)
        #expect(status.count == 1 && status.first?.isUp == true)
        // The map replaced with a file: the session is closed and forgotten, the file serves.
        let other = dir.file("other.img")
        writePatternFile(other, size: 1 << 20)
        let after = try rig.controls[0].runAndWait { e in
            try rig.targets[0].setMap(ofProcessor: 0, [StorageMapping(target: 0, lun: 0, path: other)], layer: RCLAN.on(e)!)
            return rig.targets[0].sanStatus
        }
        let (read, data) = try rig.single(.read10(lba: 0, blocks: 8), direction: .dataIn, length: 4096)
        #expect(after.isEmpty && read?.isGood == true && data == fileBytes(other, 0..<4096))
    }

    @Test("tgtd killed mid-I/O: commands end with CHECK CONDITION, none hangs, the failure is counted and named; the session logs in again when tgtd is back")
    func sanKilledMidIO() throws {
        let lun = try SANDisk(bytes: Self.diskBytes)
        defer { lun.stop() }  // keeps the LUN (its directory, its tgtd) to the end of the test
        let file = lun.file, san = lun.san
        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: san.url)]])
        defer { rig.stop() }
        let chunks = Self.diskBytes / ProcessorDriver.chunkBytes
        let clock = ContinuousClock()
        var killedAt = clock.now
        var stuck = false
        let r = try rig.workload(seed: 0xDEAD, chunks: chunks, seconds: 60) {
            // tgtd stopped first, so that commands are surely on the SAN when it dies: a loaded
            // machine could otherwise kill it between two commands. Once the processor has
            // commands outstanding and the target has answered none for 20 looks in a row,
            // what is outstanding waits on the SAN (well inside the 5 s SAN timeout).
            san.signal(SIGSTOP)
            var last = UInt64.max, same = 0
            stuck = waitUntil(seconds: 4) {
                guard let c = try? rig.counters(0),
                      let outstanding = try? rig.processor.runAndWait({ _ in rig.driver.slotChunk.contains { $0 >= 0 } })
                else { return false }
                same = c.statuses == last ? same + 1 : 0
                last = c.statuses
                return outstanding && same >= 20
            }
            killedAt = clock.now
            san.signal(SIGKILL)  // not kill(), which lets a stopped tgtd run for a moment first
            san.kill()
        }
        #expect(stuck, "no command reached the stopped SAN")
        // Every command the processor had in flight ends (none hangs): well inside the host
        // adapter's 3 s timeout, so each is answered by the target, not timed out.
        let drained = waitUntil(seconds: 10) {
            (try? rig.processor.runAndWait { _ in rig.driver.slotChunk.allSatisfy { $0 < 0 } }) == true
        }
        let settled = clock.now - killedAt
        let report = rig.driver.report.withLock { $0 }
        let c = try rig.counters(0)
        let status = try rig.controls[0].runAndWait { _ in rig.targets[0].sanStatus }
        let senses = report.failed.compactMap { $0.sense?.key }
        let (tur, _) = try rig.single(.testUnitReady())
        print("iSCSI backend, tgtd killed after \(r.writesDone) writes: \(report.failed.count) commands failed, "
              + "sense keys \(Set(senses.map { "\($0)" }).sorted()), all settled \(settled) after the kill; "
              + "target: \(c.sanFailures) SAN failures, \(c.sanCommandErrors) SAN command errors, "
              + "\(c.checkConditions) CHECK CONDITIONs; TEST UNIT READY: \(tur?.sense.map { "\($0.key)" } ?? "good"); "
              + "\(status)")
        #expect(drained)
        #expect(!report.failed.isEmpty)
        #expect(report.failed.allSatisfy {
            if case .status(let s, _, _, _) = $0.outcome { return s == SCSIStatus.checkCondition.rawValue }
            return false
        }, "\(report.failures.prefix(3))")
        #expect(senses.count == report.failed.count && senses.allSatisfy { $0 == .notReady })
        // The commands the SAN had are SAN command errors; those that came after it went down
        // were answered NOT READY by the unit (its device is not ready) without reaching it.
        #expect(c.sanFailures == 1 && c.sanCommandErrors >= 1 && c.checkConditions >= UInt64(report.failed.count))
        #expect(status.count == 1 && status[0].isUp == false && status[0].url == san.url)
        #expect(status.first?.lastError?.contains("connection lost") == true)
        #expect(tur?.sense?.key == .notReady)

        // tgtd back on the same port with the same file: the target logs in again by itself.
        try san.start()
        let back = waitUntil(seconds: 20) {
            (try? rig.controls[0].runAndWait { _ in rig.targets[0].sanStatus.first?.isUp }) == true
        }
        var read: StorageCompletion? = nil
        var data: [UInt8] = []
        for _ in 0..<5 where read?.isGood != true {  // the first command may see UNIT ATTENTION (NOT READY here)
            (read, data) = try rig.single(.read10(lba: 0, blocks: 8), direction: .dataIn, length: 4096)
        }
        let c2 = try rig.counters(0)
        print("iSCSI backend, tgtd restarted: session up again \(back), \(c2.sanReconnections) reconnections; "
              + "READ after it: \(read?.isGood == true ? "good" : "\(String(describing: read?.outcome))")")
        #expect(back && c2.sanReconnections >= 1)
        #expect(read?.isGood == true && data == fileBytes(file, 0..<4096))
    }

    @Test("a bad URL, an unreachable portal, an unknown target or LUN are refused at setup, naming the URL")
    func refusedAtSetup() throws {
        let lun = try SANDisk(bytes: 1 << 20)
        defer { lun.stop() }  // keeps the LUN (its directory, its tgtd) to the end of the test
        let file = lun.file, san = lun.san
        let nobody = "iscsi://127.0.0.1:\(freeLocalPort())/iqn.2026-12.org.plexus.test:none/1"
        let cases = [
            ("iscsi://127.0.0.1/disk/1", "is not an iSCSI name"),
            (nobody, "cannot log in to"),
            ("iscsi://127.0.0.1:\(san.port)/iqn.2026-12.org.plexus.test:other/1", "cannot log in to"),
            ("iscsi://127.0.0.1:\(san.port)/\(san.iqn)/7", "cannot log in to"),
        ]
        // Through the target's own setup path (a map replaced under a processor): each refused,
        // the processor's map (a file) kept.
        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: file)]])
        defer { rig.stop() }
        var messages: [String] = []
        for (url, reason) in cases {
            let text: String? = try rig.controls[0].runAndWait { e in
                do {
                    try rig.targets[0].setMap(ofProcessor: 0, [StorageMapping(target: 0, lun: 0, path: url)],
                                              layer: RCLAN.on(e)!)
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            guard let text else {
                Issue.record("\(url) was accepted")
                continue
            }
            messages.append(text)
            #expect(text.contains(reason) && text.contains(url), "\(text)")
        }
        let (tur, _) = try rig.single(.testUnitReady())
        let c = try rig.counters(0)
        #expect(tur?.isGood == true && c.mapChanges == 0)
        print("iSCSI setup refusals:\n  " + messages.joined(separator: "\n  "))
    }
}

extension ISCSIBackendTests {
    @Test("SendTargets discovery and REPORT LUNS list what a portal offers; a portal that does not answer is named")
    func discovery() throws {
        let lun = try SANDisk(bytes: 1 << 20)
        defer { lun.stop() }  // keeps the LUN (its directory, its tgtd) to the end of the test
        let san = lun.san
        let offers = try ISCSIDiscovery.discover(portal: "127.0.0.1:\(san.port)")
        print("iSCSI discovery at 127.0.0.1:\(san.port): \(offers)")
        #expect(offers.count == 1)
        #expect(offers.first?.target == san.iqn)
        #expect(offers.first?.portals.contains { $0.hasPrefix("127.0.0.1:\(san.port)") } == true)
        #expect(offers.first?.luns.contains(1) == true)
        // The URL it gives serves: a session logs in and reads the LUN's geometry.
        let url = offers[0].url(portal: "127.0.0.1:\(san.port)", lun: 1)
        #expect(url == san.url)
        let session = try ISCSISession(url: url, slots: 1)
        #expect(session.geometry.blockCount == UInt64((1 << 20) / 512) && session.geometry.blockSize == 512)
        let nobody = "127.0.0.1:\(freeLocalPort())"
        #expect { try ISCSIDiscovery.discover(portal: nobody) } throws: { "\($0)".contains(nobody) }
    }
}

extension ISCSIBackendTests {
    @Test("a SAN that stops answering (tgtd SIGSTOPped): commands end with NOT READY after the SAN time-out, counted; when it answers again the session logs in again")
    func sanStalls() throws {
        let lun = try SANDisk(bytes: 1 << 20, pattern: true)
        defer { lun.stop() }  // keeps the LUN (its directory, its tgtd) to the end of the test
        let file = lun.file, san = lun.san
        // The adapter waits 6 s for a STAT; the target gives the SAN 1 s.
        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: san.url)]],
                                        timeout: .seconds(6), sanTimeout: .seconds(1))
        defer { rig.stop() }
        let (first, firstData) = try rig.single(.read10(lba: 0, blocks: 8), direction: .dataIn, length: 4096)
        #expect(first?.isGood == true && firstData == fileBytes(file, 0..<4096))
        san.signal(SIGSTOP)
        let clock = ContinuousClock()
        let t0 = clock.now
        let (stalled, _) = try rig.single(.read10(lba: 8, blocks: 8), direction: .dataIn, length: 4096)
        let answeredIn = clock.now - t0
        let c = try rig.counters(0)
        let status = try rig.controls[0].runAndWait { _ in rig.targets[0].sanStatus }
        print("iSCSI backend, tgtd stopped: READ answered \(stalled?.sense.map { "\($0.key)" } ?? "\(String(describing: stalled?.outcome))") "
              + "after \(answeredIn) (SAN time-out 1 s); \(c.sanTimeouts) time-outs, \(c.sanFailures) SAN failures; \(status)")
        #expect(stalled?.sense?.key == .notReady)
        #expect(answeredIn < .seconds(4))
        #expect(c.sanTimeouts >= 1 && c.sanFailures >= 1)
        #expect(status.first?.isUp == false && status.first?.lastError?.contains("no answer") == true)
        san.signal(SIGCONT)
        let back = waitUntil(seconds: 20) {
            (try? rig.controls[0].runAndWait { _ in rig.targets[0].sanStatus.first?.isUp }) == true
        }
        var read: StorageCompletion? = nil
        var data: [UInt8] = []
        for _ in 0..<5 where read?.isGood != true {
            (read, data) = try rig.single(.read10(lba: 8, blocks: 8), direction: .dataIn, length: 4096)
        }
        let c2 = try rig.counters(0)
        print("iSCSI backend, tgtd continued: up again \(back), \(c2.sanReconnections) reconnections, "
              + "\(c2.sanFailures) SAN failures; READ \(read?.isGood == true ? "good" : "\(String(describing: read?.outcome))")")
        #expect(back && c2.sanReconnections >= 1)
        #expect(read?.isGood == true && data == fileBytes(file, 4096..<8192))
    }
}

/// A LUN on a SAN of the test's own: an image of `bytes` in a temporary directory (zeroes, or
/// the test pattern), served by a tgtd that is killed when this goes.
final class SANDisk {
    let dir = TemporaryDirectory("plexus-iscsi")
    let file: String
    let san: ISCSITargetDaemon

    init(bytes: Int, pattern: Bool = false) throws {
        file = dir.file("lun1.img")
        if pattern { writePatternFile(file, size: bytes) } else { createSparseFile(file, size: bytes) }
        san = try ISCSITargetDaemon(backing: file)
    }

    /// Kills tgtd (idempotent); the directory goes with this object.
    func stop() { san.kill() }

    deinit { san.kill() }
}
