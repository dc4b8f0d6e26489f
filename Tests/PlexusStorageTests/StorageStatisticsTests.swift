import Foundation
import PlexusCore
import PlexusRCLAN
@testable import PlexusStorage
import PlexusTestSupport
import Testing

@Suite("Disk statistics: recording, snapshots and merging")
struct DiskStatisticsTests {
    @Test("a recorder counts operations, bytes, errors and busy time; a failed read moves no bytes")
    func recorderCounts() {
        var r = DiskRecorder()
        // Two reads overlap (busy 0…3 ms), then a write alone (10…12 ms), then a failed read.
        r.started(at: 0)
        r.started(at: 1_000_000)
        r.finished(.read, length: 4096, failed: false, startedAt: 0, now: 2_000_000)
        r.finished(.read, length: 8192, failed: false, startedAt: 1_000_000, now: 3_000_000)
        r.started(at: 10_000_000)
        r.finished(.write, length: 512, failed: false, startedAt: 10_000_000, now: 12_000_000)
        r.started(at: 20_000_000)
        r.finished(.read, length: 4096, failed: true, startedAt: 20_000_000, now: 20_500_000)
        r.started(at: 30_000_000)
        r.finished(.flush, length: 0, failed: false, startedAt: 30_000_000, now: 30_100_000)
        let s = r.snapshot(now: 40_000_000)
        #expect(s.operations == 5 && s.reads == 3 && s.writes == 1 && s.flushes == 1 && s.errors == 1)
        #expect(s.bytesRead == 12288 && s.bytesWritten == 512)
        #expect(abs(s.busySeconds - 0.0056) < 1e-9, "\(s.busySeconds)")
        #expect(s.latency.count == 5)
        // Latencies 2000, 2000, 2000, 500, 100 µs: p50 2000 µs (within the histogram's precision).
        #expect(abs(s.p50Microseconds - 2000) <= 20, "\(s.p50Microseconds)")
        // A command still in flight counts toward the busy time up to now.
        r.started(at: 50_000_000)
        #expect(abs(r.snapshot(now: 51_000_000).busySeconds - 0.0066) < 1e-9)
    }

    @Test("merged statistics add counters and histograms: the percentiles of every command, not an average")
    func mergingAddsHistograms() throws {
        var fast = DiskRecorder(), slow = DiskRecorder(), all = DiskRecorder()
        // 90 commands of 100 µs on one LUN, 10 of 50 ms on another.
        for i in 0..<90 {
            let t = UInt64(i) * 1_000_000
            fast.started(at: t)
            fast.finished(.read, length: 4096, failed: false, startedAt: t, now: t + 100_000)
            all.started(at: t)
            all.finished(.read, length: 4096, failed: false, startedAt: t, now: t + 100_000)
        }
        for i in 0..<10 {
            let t = UInt64(i) * 100_000_000
            slow.started(at: t)
            slow.finished(.write, length: 65536, failed: false, startedAt: t, now: t + 50_000_000)
            all.started(at: t)
            all.finished(.write, length: 65536, failed: false, startedAt: t, now: t + 50_000_000)
        }
        let a = fast.snapshot(now: 2_000_000_000), b = slow.snapshot(now: 2_000_000_000)
        let whole = all.snapshot(now: 2_000_000_000)
        let merged = DiskStatistics.merged([a, b])
        #expect(merged.operations == 100 && merged.reads == 90 && merged.writes == 10)
        #expect(merged.bytesRead == 90 * 4096 && merged.bytesWritten == 10 * 65536)
        #expect(abs(merged.busySeconds - (a.busySeconds + b.busySeconds)) < 1e-9)
        #expect(merged.latency == whole.latency)
        #expect(merged.p50Microseconds == whole.p50Microseconds && merged.p99Microseconds == whole.p99Microseconds)
        // p50 is a fast command, p99 a slow one; an average of the two p99s would be neither.
        #expect(merged.p50Microseconds < 200 && merged.p99Microseconds > 40_000, "\(merged.p50Microseconds) \(merged.p99Microseconds)")
        // Merging is order-free, and an empty value adds nothing.
        #expect(DiskStatistics.merged([b, a, DiskStatistics()]) == merged)
        #expect(DiskStatistics.merged([DiskStatistics]()) == DiskStatistics())
        // The histogram survives JSON (what the platform store keeps).
        let back = try JSONDecoder().decode(DiskStatistics.self, from: JSONEncoder().encode(merged))
        #expect(back == merged)
    }

    @Test("a histogram read from elsewhere with absurd values merges without trapping")
    func hostileHistogram() {
        var h = LatencyHistogram()
        h.buckets = [.init(microseconds: .max, count: .max), .init(microseconds: 0, count: .max), .init(microseconds: 5, count: 3)]
        var s = DiskStatistics()
        s.latency = h
        s.operations = .max
        var m = DiskStatistics.merged([s, s])
        m.merge(s)
        #expect(m.latency.count > 0 && m.p99Microseconds <= Double(DiskRecorder.highestMicroseconds) + 1_000_000)
    }
}

@Suite("Storage statistics at the target", .serialized, .requiresIOUring)
struct TargetStatisticsTests {
    @Test("the target counts exactly the processor's reads and writes of its LUN, with their bytes")
    func targetCountsTheWorkload() throws {
        let backing = try Backing()
        let path = try backing.file("disk0", bytes: 8 << 20)
        let other = try backing.file("disk1", bytes: 1 << 20)
        let rig = try ProtocolRig.start(maps: [[StorageMapping(target: 0, lun: 0, path: path),
                                                StorageMapping(target: 0, lun: 1, path: other)]])
        defer { rig.stop() }
        let chunks = 64
        let r = try rig.workload(seed: 0x57A7, chunks: chunks)
        #expect(r.failures.isEmpty && r.readsDone == chunks && r.writesDone == chunks)
        // A command for an unmapped LUN and an INQUIRY are not I/O.
        _ = try rig.single(.testUnitReady(), target: 0, lun: 9)
        _ = try rig.single(.inquiry(allocationLength: 96), direction: .dataIn, length: 96)
        let stats = try rig.controls[0].runAndWait { _ in rig.targets[0].statistics() }
        #expect(stats.count == 2)
        let lun0 = try #require(stats.first { $0.target == 0 && $0.lun == 0 })
        let s = lun0.statistics
        print("target statistics of T0 L0 after \(chunks) writes and reads of \(ProcessorDriver.chunkBytes) bytes: "
              + "\(s.operations) operations, \(s.reads) reads, \(s.writes) writes, \(s.bytesRead) B read, "
              + "\(s.bytesWritten) B written, busy \(s.busySeconds) s, p50 \(s.p50Microseconds) µs, p99 \(s.p99Microseconds) µs")
        #expect(lun0.processor == 0 && lun0.path == path)
        #expect(s.reads == UInt64(chunks) && s.writes == UInt64(chunks) && s.operations == UInt64(2 * chunks))
        #expect(s.bytesRead == UInt64(chunks * ProcessorDriver.chunkBytes))
        #expect(s.bytesWritten == UInt64(chunks * ProcessorDriver.chunkBytes))
        #expect(s.errors == 0 && s.flushes == 0 && s.trims == 0)
        #expect(s.latency.count == UInt64(2 * chunks))
        #expect(s.busySeconds > 0 && s.p50Microseconds > 0 && s.p99Microseconds >= s.p50Microseconds)
        let lun1 = try #require(stats.first { $0.target == 0 && $0.lun == 1 })
        #expect(lun1.statistics == DiskStatistics())

        // A new map that keeps (T0, L0) on the same file keeps its figures; a LUN whose path
        // changes starts again.
        let third = try backing.file("disk2", bytes: 1 << 20)
        try rig.controls[0].runAndWait { e in
            try rig.targets[0].setMap(ofProcessor: 0, [StorageMapping(target: 0, lun: 0, path: path),
                                                       StorageMapping(target: 0, lun: 1, path: third)], layer: RCLAN.on(e)!)
        }
        let after = try rig.controls[0].runAndWait { _ in rig.targets[0].statistics() }
        #expect(after.first { $0.lun == 0 }?.statistics.reads == UInt64(chunks))
        #expect(after.first { $0.lun == 1 }?.path == third)
    }
}
