import CPlexus
import Foundation
import PlexusCore
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One block I/O completion as the test driver saw it.
struct BlockCompletion: Sendable, Equatable {
    var token: UInt32
    var result: Int32
    /// The payload of the frame handed back (nil for an operation on a region).
    var frame: [UInt8]?
}

/// A driver that records every block I/O completion.
final class BlockIODriver: EngineDriver {
    let seen: BlockSeen
    init(_ seen: BlockSeen) { self.seen = seen }
    func blockIOCompleted(token: UInt32, result: Int32, engine: Engine) {
        seen.completions.withLock { $0.append(BlockCompletion(token: token, result: result, frame: nil)) }
    }
    func blockIOCompleted(returning frame: consuming Frame, token: UInt32, result: Int32, engine: Engine) {
        let bytes = frame.withUnsafePayload { Array($0) }
        seen.completions.withLock { $0.append(BlockCompletion(token: token, result: result, frame: bytes)) }
    }
}

/// Holds the completions of a ``BlockBed``'s driver, shared with the engine thread.
final class BlockSeen: Sendable {
    let completions = Mutex<[BlockCompletion]>([])
}

/// One engine whose driver records block I/O completions, with helpers to reach it.
struct BlockBed {
    let thread: EngineThread
    let seen = BlockSeen()

    init(queueDepth: Int = 256, pollMode: PollMode = .blocking, node: UInt8 = 9) throws {
        var c = EngineConfiguration.loopback(node: node)
        c.pollMode = pollMode
        c.poolFrames = 64
        c.receiveBuffers = 64
        c.blockIOQueueDepth = queueDepth
        let s = seen
        thread = try EngineThread.start(c) { BlockIODriver(s) }
    }

    /// A local region of `bytes` (no writers), zero-filled.
    func region(_ bytes: Int) throws -> RegionKey {
        try thread.control.registerRegionAndWait(bytes: bytes, writers: [], permissions: [])
    }

    func open(_ path: String, access: BlockFile.Access = .readWrite, direct: Bool = true) throws -> BlockFile {
        try thread.runAndWait { try $0.openBlockFile(path, access: access, direct: direct) }
    }

    func fill(_ key: RegionKey, at offset: Int, with bytes: [UInt8]) throws {
        try thread.runAndWait { e in
            try e.withRegion(key) { r in
                UnsafeMutableRawBufferPointer(rebasing: r[offset..<offset + bytes.count]).copyBytes(from: bytes)
            }
        }
    }

    func bytes(_ key: RegionKey, at offset: Int, count: Int) throws -> [UInt8] {
        try thread.runAndWait { e in try e.withRegion(key) { Array($0[offset..<offset + count]) } }
    }

    /// Runs `body` on the engine thread and returns the block I/O error it threw, or nil.
    func refusal(_ body: @escaping @Sendable (Engine) throws -> Void) throws -> BlockIORefusal? {
        try thread.runAndWait { e -> BlockIORefusal? in
            do {
                try body(e)
                return nil
            } catch let error as BlockIORefusal {
                return error
            }
        }
    }

    /// Waits for the completion of `token` and returns it (nil after 10 s).
    func completion(_ token: UInt32) -> BlockCompletion? {
        var found: BlockCompletion? = nil
        _ = waitUntil {
            found = seen.completions.withLock { $0.last { $0.token == token } }
            return found != nil
        }
        return found
    }

    /// Waits until `count` completions have arrived in all.
    func waitForCompletions(_ count: Int) -> Bool {
        waitUntil { seen.completions.withLock { $0.count } >= count }
    }

    var counters: BlockIOCounters {
        get throws { try thread.runAndWait { $0.blockIOCounters } }
    }
}

/// A fresh directory under `parent`, removed by `remove()`.
struct ScratchDirectory {
    let path: String
    init(under parent: String) throws {
        var template = Array("\(parent)/plexus-blockio-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw PlexusError(.system, "mkdtemp under \(parent)", errno: errno) }
        path = String(cString: p)
    }
    /// A file `name` of `size` bytes (sparse: it reads as zeros), created anew.
    func file(_ name: String, size: Int) throws -> String {
        let p = "\(path)/\(name)"
        let fd = Glibc.open(p, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw PlexusError(.system, "creating \(p)", errno: errno) }
        defer { _ = Glibc.close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw PlexusError(.system, "sizing \(p)", errno: errno) }
        return p
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// The bytes of a file, read with plain pread (to check what the engine wrote, independently).
func fileBytes(_ path: String, at offset: Int, count: Int) -> [UInt8] {
    let fd = Glibc.open(path, O_RDONLY)
    guard fd >= 0 else { return [] }
    defer { _ = Glibc.close(fd) }
    var out = [UInt8](repeating: 0, count: count)
    let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
    return Array(out.prefix(max(n, 0)))
}

/// The file system type (`f_type`) holding `path`.
func fileSystemType(_ path: String) -> Int64 {
    let fd = Glibc.open(path, O_RDONLY)
    guard fd >= 0 else { return 0 }
    defer { _ = Glibc.close(fd) }
    var probe = plx_block_probe()
    return plx_block_probe(fd, &probe) == 0 ? probe.fs_type : 0
}

/// File systems that do direct I/O: ext2/3/4, XFS, btrfs.
let directIOFileSystems: Set<Int64> = [0xEF53, 0x5846_5342, 0x9123_683E]
