import Foundation
import PlexusCore
import PlexusLAN
import PlexusRCLAN
import Synchronization

// Console routing ("Management logic": each processing node's console is routed to the control
// node and kept there). A node sends its workload's output and its own log as console pieces
// over its management RVI to both control nodes; each control node appends them to its
// archive, one file per node, kept for audit. `plexus console NODE` reads the archive through
// the management API.

/// A control node's archive of the processing nodes' consoles: `<directory>/node<N>.log`,
/// appended to and never rewritten.
///
/// Each piece carries the node's incarnation (the start of that run of the node) and a
/// sequence number, and the archive remembers the last piece written per node in
/// `node<N>.seq` (incarnation and sequence, 12 bytes), read and updated under an exclusive
/// `flock` of the log: a piece offered twice is written once, also when two control node
/// processes share the directory or a control node restarts. The log is opened with
/// `O_APPEND`, so lines the control nodes add themselves (``note(node:_:)``) interleave
/// without overwriting.
public final class ConsoleArchive: ConsoleSink, Sendable {
    public let directory: String
    struct NodeState {
        var fd: Int32
        var seq: Int32
    }
    let state = Mutex<[NodeNumber: NodeState]>([:])

    /// Opens (creating it if need be) the archive in `directory`.
    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit {
        state.withLock { s in
            for (_, n) in s {
                close(n.fd)
                close(n.seq)
            }
        }
    }

    /// The file holding node `node`'s console.
    public func path(of node: NodeNumber) -> String { "\(directory)/node\(node).log" }

    /// Appends a piece of node `node`'s console unless it was written already. Returns whether
    /// it was written.
    @discardableResult
    public func append(node: NodeNumber, incarnation: UInt64, sequence: UInt32, _ text: [UInt8]) -> Bool {
        state.withLock { s in
            guard let d = Self.descriptors(&s, node, path(of: node)) else { return false }
            flock(d.fd, LOCK_EX)
            defer { flock(d.fd, LOCK_UN) }
            var last = [UInt8](repeating: 0, count: 12)
            let got = last.withUnsafeMutableBytes { pread(d.seq, $0.baseAddress, 12, 0) }
            if got == 12 {
                let have = last.withUnsafeBytes { (i: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                                                    q: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
                if have.i == incarnation && sequence <= have.q { return false }
            }
            guard Self.write(d.fd, text) else { return false }
            withUnsafeBytes(of: incarnation) { last.replaceSubrange(0..<8, with: $0) }
            withUnsafeBytes(of: sequence) { last.replaceSubrange(8..<12, with: $0) }
            _ = last.withUnsafeBytes { pwrite(d.seq, $0.baseAddress, 12, 0) }
            return true
        }
    }

    /// Appends a line the control node itself says about node `node` (its failure, its
    /// failover), stamped with the time.
    public func note(node: NodeNumber, _ line: String) {
        let stamp = ISO8601DateFormatter().string(from: Date())
        let text = Array("[\(stamp)] plexus control: \(line)\n".utf8)
        state.withLock { s in
            guard let d = Self.descriptors(&s, node, path(of: node)) else { return }
            flock(d.fd, LOCK_EX)
            _ = Self.write(d.fd, text)
            flock(d.fd, LOCK_UN)
        }
    }

    /// Node `node`'s console from byte `offset`, at most `limit` bytes, and the offset to read
    /// from next. A node that never wrote has an empty console.
    public func read(node: NodeNumber, from offset: Int = 0, limit: Int = 1 << 20) -> (text: [UInt8], next: Int) {
        let fd = open(path(of: node), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return ([], offset) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: max(0, limit))
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard n > 0 else { return ([], offset) }
        return (Array(buffer[0..<n]), offset + n)
    }

    /// The nodes that have a console here.
    public func nodes() -> [NodeNumber] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { n -> NodeNumber? in
            guard n.hasPrefix("node"), n.hasSuffix(".log") else { return nil }
            return NodeNumber(String(n.dropFirst(4).dropLast(4)))
        }.sorted()
    }

    static func descriptors(_ s: inout [NodeNumber: NodeState], _ node: NodeNumber, _ path: String) -> NodeState? {
        if let have = s[node] { return have }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return nil }
        let seq = open(String(path.dropLast(4)) + ".seq", O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard seq >= 0 else {
            close(fd)
            return nil
        }
        s[node] = NodeState(fd: fd, seq: seq)
        return s[node]
    }

    static func write(_ fd: Int32, _ text: [UInt8]) -> Bool {
        var done = 0
        while done < text.count {
            let n = text.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            done += n
        }
        return true
    }
}
