import ArgumentParser
import CPlexus
import Foundation
import PlexusCore


extension Fabric: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument.lowercased() {
        case "a": self = .a
        case "b": self = .b
        default: return nil
        }
    }
}

/// Which fabrics a scenario uses.
enum FabricChoice: String, ExpressibleByArgument, CaseIterable, Sendable {
    case a, b, both
    var fabrics: [Fabric] {
        switch self {
        case .a: [.a]
        case .b: [.b]
        case .both: [.a, .b]
        }
    }
}

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

/// Writes to standard error.
func note(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// Formats a byte rate for people.
func human(gbps: Double) -> String { String(format: "%.2f GB/s", gbps) }
func human(rate: Double) -> String {
    rate >= 1e6 ? String(format: "%.2f M/s", rate / 1e6) : String(format: "%.1f k/s", rate / 1e3)
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ s: String) { description = s }
}

/// `--fault FABRIC:PLAN`, e.g. `a:drop=5,dup=1,seed=7` or `b:down`.
struct FaultOption: ExpressibleByArgument, Sendable {
    var fabric: Fabric
    var plan: FaultPlan

    init?(argument: String) {
        let parts = argument.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let f = Fabric(argument: parts[0]),
              let plan = try? FaultPlan(parsing: parts[1]) else { return nil }
        fabric = f
        self.plan = plan
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// Checks every --fault value, so that a bad plan gets the parser's own message.
func validateFaults(_ raw: [String]) throws {
    for r in raw {
        let parts = r.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, Fabric(argument: parts[0]) != nil else {
            throw ValidationError("--fault '\(r)': expected FABRIC:PLAN, e.g. a:drop=5,seed=7")
        }
        do { _ = try FaultPlan(parsing: parts[1]) } catch { throw ValidationError("--fault: \(error)") }
    }
}
