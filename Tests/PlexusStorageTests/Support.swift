import Foundation
import PlexusStorage
#if canImport(Glibc)
import Glibc
#endif

/// A directory of its own under /tmp, removed with everything in it when dropped.
final class TemporaryDirectory {
    let path: String

    init(_ prefix: String = "plexus-storage") {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The bytes a test file holds at `offset`: a pattern that differs in every 8-byte word.
func pattern(_ offset: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> UInt8 {
    var x = UInt64(offset / 8) &* seed &+ 0x2545_F491_4F6C_DD1D
    x ^= x >> 29
    return UInt8(truncatingIfNeeded: x >> (8 * UInt64(offset % 8)))
}

/// Creates `path` with `size` bytes of ``pattern(_:seed:)``.
func writePatternFile(_ path: String, size: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) {
    let data = Data((0..<size).map { pattern($0, seed: seed) })
    _ = FileManager.default.createFile(atPath: path, contents: data)
}

/// The file's bytes in `range`.
func fileBytes(_ path: String, _ range: Range<Int>) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    var out = [UInt8](repeating: 0, count: range.count)
    let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, range.count, off_t(range.lowerBound)) }
    return Array(out.prefix(max(0, n)))
}

/// The file's allocated 512-byte blocks (st_blocks).
func allocatedBlocks(_ path: String) -> Int {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_blocks) : -1
}

extension IOBuffer {
    /// The first `n` bytes (tests; allocates).
    func prefix(_ n: Int) -> [UInt8] { withUnsafeBytes { Array($0.prefix(n)) } }

    /// Copies `bytes` to the start.
    mutating func fill(_ bytes: [UInt8]) { withUnsafeMutableBytes { $0.copyBytes(from: bytes) } }
}
