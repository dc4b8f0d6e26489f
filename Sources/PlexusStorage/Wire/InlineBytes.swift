/// Up to `capacity` bytes held inline, with their count: a CDB (16 bytes) or sense data (252)
/// inside a decoded message, so that decoding never allocates.
///
/// Equality and hashing look at the first ``count`` bytes only.
public struct InlineBytes<let capacity: Int>: Sendable, Hashable, CustomStringConvertible {
    @usableFromInline var storage = InlineArray<capacity, UInt8>(repeating: 0)
    /// How many bytes are held (at most `capacity`).
    public private(set) var count = 0

    /// No bytes.
    public init() {}

    /// `bytes`, or nil when there are more than `capacity`.
    public init?(_ bytes: some Sequence<UInt8>) {
        // Filled in a local and assigned last (see SegmentList.init?(_:) for why).
        var filled = InlineBytes()
        for b in bytes {
            guard filled.append(b) else { return nil }
        }
        self = filled
    }

    /// The bytes of `span`, or nil when there are more than `capacity`.
    public init?(span: RawSpan) {
        guard span.byteCount <= capacity else { return nil }
        var filled = InlineBytes()
        for i in 0..<span.byteCount { filled.append(span.byte(i)) }
        self = filled
    }

    public var isEmpty: Bool { count == 0 }

    /// Byte `i` (below ``count``).
    public subscript(i: Int) -> UInt8 {
        get {
            precondition(i >= 0 && i < count, "byte index out of range")
            return storage[i]
        }
        set {
            precondition(i >= 0 && i < count, "byte index out of range")
            storage[i] = newValue
        }
    }

    /// Byte `i`, or 0 at or beyond ``count`` (a CDB field the command is too short to have).
    @inlinable
    public func byte(_ i: Int) -> UInt8 { i < count ? storage[i] : 0 }

    /// Appends `b`; false (and nothing changes) when full.
    @discardableResult
    public mutating func append(_ b: UInt8) -> Bool {
        guard count < capacity else { return false }
        storage[count] = b
        count += 1
        return true
    }

    /// Sets the count to `n` (at most `capacity`); bytes past the old count read as zero.
    public mutating func resize(to n: Int) {
        precondition(n >= 0 && n <= capacity, "count out of range")
        for i in min(n, count)..<capacity { storage[i] = 0 }
        count = n
    }

    /// The bytes held, as a span.
    public var bytes: RawSpan {
        @_lifetime(borrow self)
        borrowing get {
            let all = storage.span.bytes
            return _overrideLifetime(all.extracting(0..<count), borrowing: self)
        }
    }

    /// The bytes as an array (tests and descriptions; allocates).
    public var array: [UInt8] { (0..<count).map { storage[$0] } }

    public static func == (a: Self, b: Self) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where a.storage[i] != b.storage[i] { return false }
        return true
    }

    public func hash(into h: inout Hasher) {
        h.combine(count)
        for i in 0..<count { h.combine(storage[i]) }
    }

    public var description: String {
        array.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined(separator: " ")
    }
}
