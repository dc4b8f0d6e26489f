// Block I/O on the engine's ring: 4 KiB reads from a file into a registered region, up to 32 in
// flight, each completing into the driver on the engine thread. As in LoopbackPair, the
// measured thread only moves atomics: it raises `requested` and waits for `completed`; the
// engine (blocking, woken by a 50 µs ring timer) submits reads on its turn.

import Benchmark
import PlexusCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

final class BlockReadState: Sendable {
    let requested = Atomic<Int>(0)
    let completed = Atomic<Int>(0)
    /// Reads that completed with anything but the 4096 bytes asked for, or were refused.
    let failures = Atomic<Int>(0)
}

/// The engine's driver: keeps up to `depth` reads in flight while `requested` is ahead, each
/// into its own 4 KiB of the region (the token names it).
final class BlockReader: EngineDriver {
    static let blockBytes = 4096
    let state: BlockReadState
    let depth: Int
    let blocks: Int
    var file: BlockFile?
    var region: RegionKey?
    var submitted = 0
    var next = 0
    /// Free 4 KiB slots of the region (capacity reserved up front: no allocation).
    var free: [UInt32]

    init(state: BlockReadState, depth: Int, blocks: Int) {
        self.state = state
        self.depth = depth
        self.blocks = blocks
        free = Array((0..<UInt32(depth)).reversed())
        free.reserveCapacity(depth)
    }

    func engineDidStart(_ engine: Engine) { engine.schedule(after: .microseconds(50), token: 1) }
    func timerFired(token: UInt32, engine: Engine) { engine.schedule(after: .microseconds(50), token: 1) }

    func engineTurn(_ engine: Engine) {
        guard let file, let region else { return }
        let requested = state.requested.load(ordering: .acquiring)
        while submitted < requested, let slot = free.popLast() {
            do {
                try engine.read(file, at: UInt64(next * Self.blockBytes), length: Self.blockBytes, into: region,
                                regionOffset: Int(slot) * Self.blockBytes, token: slot)
            } catch {
                free.append(slot)
                state.failures.add(1, ordering: .relaxed)
                return
            }
            // A stride that is prime to the block count visits every block before repeating.
            next = (next + 97) % blocks
            submitted += 1
        }
    }

    func blockIOCompleted(token: UInt32, result: Int32, engine: Engine) {
        if result != Int32(Self.blockBytes) { state.failures.add(1, ordering: .relaxed) }
        free.append(token)
        state.completed.add(1, ordering: .releasing)
    }
}

/// One engine reading a 16 MiB file (written in full first, so that reads touch real blocks;
/// `O_DIRECT` where the file system allows it) under a fresh directory of /tmp.
final class BlockReadBed: Sendable, StreamBed {
    static let fileBytes = 16 << 20
    let state = BlockReadState()
    let thread: EngineThread
    let directory: String
    let direct: Bool

    init() throws {
        var template = Array("/tmp/plexus-bench-XXXXXX".utf8CString)
        guard let d = mkdtemp(&template) else { throw BenchError("mkdtemp failed") }
        directory = String(cString: d)
        let path = directory + "/disk"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw BenchError("cannot create \(path)") }
        let chunk = [UInt8](repeating: 0xA5, count: 1 << 20)
        for i in 0..<(Self.fileBytes >> 20) {
            _ = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(i << 20)) }
        }
        fsync(fd)
        close(fd)

        var c = EngineConfiguration.loopback(node: 7)
        c.name = "bench-blockio"
        c.poolFrames = 64
        c.receiveBuffers = 64
        let state = self.state
        let blocks = Self.fileBytes / BlockReader.blockBytes
        thread = try EngineThread.start(c, driver: { BlockReader(state: state, depth: 32, blocks: blocks) })
        let region = try thread.control.registerRegionAndWait(bytes: 32 * BlockReader.blockBytes, writers: [],
                                                              permissions: [])
        direct = try thread.runAndWait { e in
            let file = try e.openBlockFile(path, access: .readOnly)
            guard let reader = e.installedDriver as? BlockReader else { throw BenchError("no reader") }
            reader.file = file
            reader.region = region
            return file.isDirect
        }
        report("BlockIORead_4KiB: \(path) opened \(direct ? "O_DIRECT" : "buffered")\n")
    }

    func deliver(_ count: Int) {
        let target = state.requested.add(count, ordering: .releasing).newValue
        spinWait(timeout: .seconds(10), until: { state.completed.load(ordering: .acquiring) >= target }) {
            fail("timed out waiting for read \(target)")
        }
        if state.failures.load(ordering: .relaxed) != 0 { fail("reads failed or were refused") }
    }

    func fail(_ why: String) -> Never {
        let counters = (try? thread.runAndWait { "\($0.blockIOCounters)" }) ?? "(engine gone)"
        report("CoreBenchmarks: \(why)\n\(counters)\n")
        fatalError("CoreBenchmarks: \(why)\n\(counters)")
    }

    func check(_ name: String) {
        if state.failures.load(ordering: .relaxed) != 0 { fail("\(name): reads failed") }
    }

    func stop() {
        thread.stopAndWait()
        unlink(directory + "/disk")
        rmdir(directory)
    }
}
