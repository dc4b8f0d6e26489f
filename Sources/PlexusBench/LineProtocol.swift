import Foundation

// The line protocol between `plexus bench` and its `plexus bench-peer` child: a word and a
// JSON object per line.

/// Reads lines from a file descriptor (a child's stdout or our stdin).
final class LineReader {
    let fd: Int32
    var buffer: [UInt8] = []
    init(fd: Int32) { self.fd = fd }
    func readLine() -> String? {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { return buffer.isEmpty ? nil : String(decoding: buffer, as: UTF8.self) }
            buffer += chunk[..<n]
        }
    }
}

func writeLine(_ fd: Int32, _ s: String) {
    let bytes = Array((s + "\n").utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return }
        off += n
    }
}

func jsonLine(_ object: Any) -> String {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}

func parseJSON(_ s: Substring) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [String: Any] ?? [:]
}
