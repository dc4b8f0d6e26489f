import Logging

/// A node's or a service's log: the last ``capacity`` lines kept in memory (what the tests, the
/// console and `plexus control` read), every line also given to a swift-log `Logger` (levels,
/// timestamps and a label per node and service; where it goes is the program's choice:
/// `LoggingSystem.bootstrap`). A control node that runs for months, or a peer that makes it log
/// on every message, cannot grow it without bound: the oldest lines go first, and ``total``
/// counts every line ever appended, so a reader that remembers where it was (``since(_:)``)
/// knows when it fell behind.
public struct BoundedLog: RandomAccessCollection, Sendable {
    /// The most lines kept.
    public let capacity: Int
    /// Lines appended since the log was made (kept or not).
    public private(set) var total = 0
    /// Where each line goes too.
    public var logger: Logger
    var ring: [String] = []
    var head = 0

    /// - Parameter level: the least level that reaches ``logger``'s handler; lines are kept in
    ///   memory whatever their level. The default keeps a library quiet until its embedder asks
    ///   (`plexus control` and `plexus node` pass `--log-level`, `info` by default).
    public init(label: String, capacity: Int = 1000, level: Logger.Level = .notice) {
        precondition(capacity > 0)
        self.capacity = capacity
        logger = Logger(label: label)
        logger.logLevel = level
    }

    /// Appends `line`, dropping the oldest when full, and logs it at `level`.
    public mutating func append(_ line: String, level: Logger.Level = .info) {
        logger.log(level: level, "\(line)")
        total += 1
        if ring.count < capacity {
            ring.append(line)
        } else {
            ring[head] = line
            head = (head + 1) % capacity
        }
    }

    /// Lines dropped to keep within ``capacity``.
    public var dropped: Int { total - ring.count }

    /// The lines appended after the first `seen` (a reader's previous ``total``), those still
    /// kept, and how many of them were dropped before they could be read.
    public func since(_ seen: Int) -> (lines: [String], missed: Int) {
        let start = Swift.max(seen, dropped)
        guard start < total else { return ([], 0) }
        return (Array(self[(start - dropped)...]), start - seen)
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { ring.count }
    public subscript(i: Int) -> String { ring[(head + i) % ring.count] }
}
