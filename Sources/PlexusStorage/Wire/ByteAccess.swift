// Integer loads and stores at byte offsets of spans, in either byte order: the storage messages
// are little-endian, SCSI and NBD big-endian. Every access is bounds-checked by the span itself
// (a precondition), so callers check lengths first and refuse short input with a typed error.

extension RawSpan {
    /// The little-endian `T` at `offset`.
    @inlinable @inline(__always)
    func loadLE<T: FixedWidthInteger & BitwiseCopyable>(_ offset: Int, as _: T.Type = T.self) -> T {
        T(littleEndian: unsafeLoadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// The big-endian `T` at `offset`.
    @inlinable @inline(__always)
    func loadBE<T: FixedWidthInteger & BitwiseCopyable>(_ offset: Int, as _: T.Type = T.self) -> T {
        T(bigEndian: unsafeLoadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// The byte at `offset`.
    @inlinable @inline(__always)
    func byte(_ offset: Int) -> UInt8 { unsafeLoad(fromByteOffset: offset, as: UInt8.self) }
}

extension MutableRawSpan {
    /// Stores `value` little-endian at `offset`.
    @inlinable @inline(__always)
    mutating func storeLE<T: FixedWidthInteger & BitwiseCopyable>(_ value: T, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }

    /// Stores `value` big-endian at `offset`.
    @inlinable @inline(__always)
    mutating func storeBE<T: FixedWidthInteger & BitwiseCopyable>(_ value: T, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
    }

    /// Stores one byte at `offset`.
    @inlinable @inline(__always)
    mutating func storeByte(_ value: UInt8, at offset: Int) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }

    /// Sets `count` bytes from `offset` to zero.
    @inlinable
    mutating func zero(from offset: Int, count: Int) {
        var i = offset
        let end = offset + count
        // Eight bytes at a time, then the tail.
        while i + 8 <= end {
            storeBytes(of: UInt64(0), toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < end {
            storeBytes(of: UInt8(0), toByteOffset: i, as: UInt8.self)
            i += 1
        }
    }
}
