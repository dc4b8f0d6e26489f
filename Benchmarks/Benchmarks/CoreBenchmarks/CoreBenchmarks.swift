// Benchmarks of the PlexusCore data path.
//
// The gate is allocation, not time: the CI threshold check (scripts/bench-thresholds.sh) only
// compares `mallocCountTotal`, counted over every thread of the process by ordo-one/benchmark's
// malloc interposer. Wall clock and throughput are reported for information; on a shared 2-core
// machine they are far too noisy to gate on.
//
// What one benchmark iteration is:
//   HeaderEncode, HeaderDecode, PoolTakeRelease    1000 operations (scalingFactor .kilo)
//   StorageMessageEncode, StorageMessageDecode,
//   SCSIWriteRead_4K, NBDWriteRead_4K,
//   DiskExportWriteRead_4K                        1000 operations (StorageBench.swift,
//                                                  DiskExportBench.swift)
//   VIDemuxAndDeliver_64B, VIDemuxAndDeliver_16896B,
//   InterposerCanary_OneAllocPerFrame             1000 frames sent by node 1 round-robin over
//                                                  2048 VIs (1024 per fabric) and handed to
//                                                  node 2's driver, both engines in this process
//   BlockIORead_4KiB                              1000 reads of 4 KiB from a file into a region
// so a mallocCountTotal of N in Thresholds/ means N allocations per 1000 operations or frames
// (the text table divides by the scaling factor: it shows allocations per operation or frame).
//
// Failures crash the process on purpose (fatalError), see `loopbackBenchmark`.

import Benchmark
import MallocInterposerSwift
import PlexusCore

#if canImport(Glibc)
import Glibc
#endif

/// Holds what a benchmark's setup hook built, for its closure and teardown (the runner calls
/// setup, the iterations and teardown one after another on one thread).
final class SetupSlot<T>: @unchecked Sendable {
    var value: T?
}

let benchmarks: @Sendable () -> Void = {
    _ = savedStandardError  // taken now, before the runner silences fds 1 and 2
    Benchmark.defaultConfiguration = .init(
        metrics: [.mallocCountTotal, .wallClock, .throughput],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1000,
        // Only mallocCountTotal is ever written to Thresholds/ (the script runs the update and
        // the check with `--metric mallocCountTotal`); it must match exactly.
        thresholds: [.mallocCountTotal: .strict]
    )

    // MARK: - Wire format

    Benchmark("HeaderEncode") { benchmark in
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: FrameLayout.headerSize, alignment: 64)
        defer { buffer.deallocate() }
        var header = FrameHeader(type: .data, destinationVI: 1, sourceVI: 2, payloadLength: 64)
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            header.destinationVI = UInt32(truncatingIfNeeded: i)
            header.encode(into: buffer)
            blackHole(buffer.load(fromByteOffset: 8, as: UInt32.self))
        }
        benchmark.stopMeasurement()
    }

    Benchmark("HeaderDecode") { benchmark in
        let length = FrameLayout.headerSize + 64
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 64)
        defer { buffer.deallocate() }
        FrameHeader(type: .data, destinationVI: 1, sourceVI: 2, payloadLength: 64).encode(into: buffer)
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            // Change the destination VI so every decode reads fresh bytes.
            buffer.storeBytes(of: UInt32(truncatingIfNeeded: i).bigEndian, toByteOffset: 8, as: UInt32.self)
            switch FrameHeader.decode(from: buffer, length: length) {
            case .success(let h): blackHole(h.destinationVI)
            case .failure(let e): fatalError("decode failed: \(e)")
            }
        }
        benchmark.stopMeasurement()
    }

    // MARK: - Frame pool

    let pool = SetupSlot<FramePool>()
    Benchmark(
        "PoolTakeRelease",
        configuration: .init(
            setup: {
                do { pool.value = try FramePool(slots: 64) } catch { fatalError("PoolTakeRelease: \(error)") }
            },
            teardown: { pool.value = nil })
    ) { benchmark in
        guard let p = pool.value else { fatalError("PoolTakeRelease: no pool") }
        for _ in benchmark.scaledIterations {
            guard let taken = p.take() else { fatalError("PoolTakeRelease: pool empty") }
            var frame = taken
            frame.length = 64
            blackHole(frame.length)
            // Dropping the frame returns its slot to the pool.
        }
        blackHole(p.available)
    }

    // MARK: - Two engines on loopback: send, demultiplex over 2048 VIs, deliver

    for payload in [64, FrameLayout.maxPayload] {
        loopbackBenchmark("VIDemuxAndDeliver_\(payload)B", payloadBytes: payload, allocationsPerIteration: 0)
    }

    // The other two paths: a blocking sender whose sends go out as UDP GSO sendmsgs on the ring,
    // and a busy-polling receiver that reads its sockets with recvmsg/recvmmsg.
    for payload in [64, FrameLayout.maxPayload] {
        loopbackBenchmark("GSOSendPolledReceive_\(payload)B", payloadBytes: payload, allocationsPerIteration: 0,
                          swapModes: true)
    }

    // MARK: - Canary

    // The same stream, but node 2's driver copies every payload into a new [UInt8]: exactly one
    // allocation per frame, made on the receiver's engine thread. Its threshold is 1000 per
    // iteration; if it ever reads 0, the interposer has stopped seeing the engine threads (or
    // stopped counting at all) and the zeros above prove nothing.
    loopbackBenchmark("InterposerCanary_OneAllocPerFrame", payloadBytes: 64, copyPayloadOnReceive: true)

    // MARK: - Redundant VIs (RCLAN layer)

    // Node 1 posts, node 2 receives in order, node 1 gets the acknowledgement: small messages
    // coalesced into shared frames, and whole 16896-byte frames sent without a copy.
    rviBenchmark("RVIMessages_64B", payloadBytes: 64, coalesce: true)
    rviBenchmark("RVIFrames_16896B", payloadBytes: FrameLayout.maxPayload, coalesce: false)
    // RDMA WRITEs of whole frames (less the 32-byte trailer) over the RVI into node 2's region.
    rviBenchmark("RVIRDMAWrites_16864B", payloadBytes: FrameLayout.maxPayload - 32, coalesce: false, rdma: true)

    // MARK: - Virtual LANs (driver and virtual LAN server)

    // Two control nodes and three processing nodes in this process: node 3's frames go direct
    // to node 4 (unicast), or through a server that clones them to nodes 4 and 5.
    lanBenchmark("LANUnicastDirect_1500B", traffic: .unicastDirect, frameBytes: 1500)
    lanBenchmark("LANBroadcast_1500B", traffic: .broadcast, frameBytes: 1500)
    lanBenchmark("LANMulticast_1500B", traffic: .multicast, frameBytes: 1500)

    // MARK: - Storage (StorageBench.swift)

    storageBenchmarks()
    // The storage protocol end to end over two RVIs: a 4 KiB write then its read-back
    // (StorageRVIBench.swift).
    streamBenchmark("StorageRVIWriteRead_4K", unit: "pairs") { try StorageStreamBed() }

    // MARK: - Block I/O on the engine's ring

    // 4 KiB reads from a file into a registered region, 32 in flight, each completing into the
    // driver on the engine thread (the backend path of a storage target).
    streamBenchmark("BlockIORead_4KiB", unit: "reads") { try BlockReadBed() }
}

/// Registers a benchmark that streams 1000 frames per iteration between two engines on
/// loopback, set up (and warmed up) once before its iterations and stopped after them.
///
/// With `allocationsPerIteration` given, every measured iteration is also checked on its own:
/// the threshold file gates the p90 only, which would let an allocation that happens once in a
/// while (an array growing, a table rehashing) through. One such iteration fails the run.
///
/// Every failure here crashes the benchmark process on purpose: benchmark 1.38.1's
/// `thresholds check` exits 0 when a benchmark merely reports an error (`benchmark.error`, a
/// throwing setup or teardown) and checks nothing for it, but exits non-zero on a crash.
func loopbackBenchmark(_ name: String, payloadBytes: Int, copyPayloadOnReceive: Bool = false,
                       allocationsPerIteration: Int? = nil, swapModes: Bool = false) {
    let pair = SetupSlot<LoopbackPair>()
    Benchmark(
        name,
        configuration: .init(
            warmupIterations: 20,
            maxDuration: .seconds(5),
            maxIterations: 200,
            setup: {
                let p: LoopbackPair
                do {
                    p = try LoopbackPair(payloadBytes: payloadBytes, copyPayloadOnReceive: copyPayloadOnReceive,
                                         swapModes: swapModes)
                } catch {
                    fatalError("\(name): cannot start two engines on loopback: \(error)")
                }
                pair.value = p
                // Warm up outside the measurement: the first frames on every VI, the zero-copy
                // probe (loopback always copies, so .auto turns it off), and whatever the first
                // turns of each engine do once.
                p.deliver(20 * p.vis.count)
                let dropped = p.droppedFrames()
                if dropped != 0 { p.fail("\(name): \(dropped) frames dropped during warm-up") }
            },
            teardown: {
                guard let p = pair.value else { return }
                let dropped = p.droppedFrames()
                if dropped != 0 { p.fail("\(name): \(dropped) frames dropped") }
                if swapModes && p.gsoDatagrams() == 0 { p.fail("\(name): the sender never used UDP GSO") }
                p.stop()
                pair.value = nil
            })
    ) { benchmark in
        guard let p = pair.value else { fatalError("\(name): engines not set up") }
        measure(benchmark, name, allowed: allocationsPerIteration, unit: "frames", deliver: p.deliver, fail: p.fail)
    }
}

/// A set of engines a stream benchmark runs against: built in the setup hook, asked for `count`
/// more messages or frames per iteration, checked and stopped in the teardown hook.
protocol StreamBed: AnyObject {
    func deliver(_ count: Int)
    func fail(_ why: String) -> Never
    /// Checks what the run left behind (losses, paths taken); fails the run if it is wrong.
    func check(_ name: String)
    func stop()
}

/// Registers a stream benchmark: `make` builds the engines in setup and 5000 warm-up items go
/// through them outside the measurement; each iteration is checked on its own for allocations
/// (0 allowed). As with `loopbackBenchmark`, every failure crashes the process on purpose.
func streamBenchmark<Bed: StreamBed>(_ name: String, unit: String, _ make: @escaping () throws -> Bed) {
    let bed = SetupSlot<Bed>()
    Benchmark(
        name,
        configuration: .init(
            warmupIterations: 20,
            maxDuration: .seconds(5),
            maxIterations: 200,
            setup: {
                do {
                    bed.value = try make()
                } catch {
                    fatalError("\(name): cannot start the engines: \(error)")
                }
                bed.value!.deliver(5000)
            },
            teardown: {
                bed.value?.check(name)
                bed.value?.stop()
                bed.value = nil
            })
    ) { benchmark in
        guard let b = bed.value else { fatalError("\(name): engines not set up") }
        measure(benchmark, name, allowed: 0, unit: unit, deliver: b.deliver, fail: b.fail)
    }
}

/// Runs one iteration (`deliver` of the scaled count) and, with `allowed` given and the malloc
/// metric being measured (the interposer counts only then), fails the run when this iteration
/// alone allocated more than `allowed` times.
func measure(_ benchmark: Benchmark, _ name: String, allowed: Int?, unit: String, deliver: (Int) -> Void,
             fail: (String) -> Never) {
    guard let allowed, benchmark.configuration.metrics.contains(.mallocCountTotal) else {
        deliver(benchmark.scaledIterations.count)
        return
    }
    let before = MallocInterposerSwift.getStatistics().mallocCount
    deliver(benchmark.scaledIterations.count)
    let allocated = MallocInterposerSwift.getStatistics().mallocCount - before
    if allocated > allowed {
        fail("\(name): iteration \(benchmark.currentIteration) allocated \(allocated) times for "
             + "\(benchmark.scaledIterations.count) \(unit) (allowed: \(allowed)); run "
             + "`swift package benchmark --filter \(name) --allocation-stacks` to see where")
    }
}
