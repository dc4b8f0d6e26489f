/// The number of a node of the platform: a processing node or a control node ("Network
/// Architecture": every node on the two fabrics has a number, and the control nodes set up the
/// paths between nodes by rule from the numbers).
///
/// One type for every place a node number appears: the control messages and the address
/// table carry it as a big-endian u32 (``rawValue``), the definition and plan files, the
/// platform store and the management API as a plain JSON integer, log lines and command output
/// as the bare number.
///
/// The type holds any u32, as the wire does. The numbers a platform may use are narrower: the
/// VI numbering the control nodes apply (`PlexusLAN.VINumbering`, whose `maximumNode` is 4095
/// with the engine's default 16384 VIs) allows 1...4095, and the platform definition, a
/// processing node and the management API each check the range they accept, naming the field.
public struct NodeNumber: Sendable, Hashable, Comparable {
    /// The number as the wire carries it.
    public var rawValue: UInt32

    /// The node numbered `rawValue`.
    @inlinable
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    /// The node numbered `value`, or nil when `value` is negative or above `UInt32.max`.
    @inlinable
    public init?(exactly value: Int) {
        guard let raw = UInt32(exactly: value) else { return nil }
        self.rawValue = raw
    }

    @inlinable
    public static func < (a: NodeNumber, b: NodeNumber) -> Bool { a.rawValue < b.rawValue }

    /// Every number the wire can carry, `0...UInt32.max` (a digest of the whole address table
    /// covers this range).
    public static let wireRange: ClosedRange<NodeNumber> = NodeNumber(0)...NodeNumber(.max)
}

extension NodeNumber: ExpressibleByIntegerLiteral {
    @inlinable
    public init(integerLiteral value: UInt32) { self.rawValue = value }
}

extension NodeNumber: CustomStringConvertible, LosslessStringConvertible {
    /// The bare number, as log lines and command output print it.
    public var description: String { String(rawValue) }

    /// Parses a decimal number of 0...`UInt32.max` (no sign, no spaces).
    public init?(_ description: String) {
        guard let raw = UInt32(description) else { return nil }
        self.rawValue = raw
    }
}

extension NodeNumber: Codable {
    /// An integer no node can have: negative, or above `UInt32.max`. The underlying error of
    /// the `DecodingError` that refuses it, so a reader can name the field and the value.
    public struct OutOfRange: Error, Sendable, Hashable {
        public var value: Int
    }

    /// Reads a plain JSON integer. A negative number, or one above `UInt32.max`, is refused
    /// with a `DecodingError.dataCorrupted` that names it (its underlying error is
    /// ``OutOfRange``).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let value = try c.decode(Int.self)
        guard let n = NodeNumber(exactly: value) else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath,
                                                    debugDescription: "\(value) is not a node number (0...\(UInt32.max))",
                                                    underlyingError: OutOfRange(value: value)))
        }
        self = n
    }

    /// Writes a plain JSON integer.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

extension Int {
    /// The value of node number `n`.
    @inlinable
    public init(_ n: NodeNumber) { self = Int(n.rawValue) }
}
