#if canImport(Glibc)
import Glibc
#endif

/// The shape of a block device: its size in logical blocks and what it can do.
public struct BlockGeometry: Sendable, Hashable {
    /// Bytes in a logical block (512 or 4096).
    public var blockSize: Int
    /// Logical blocks on the device.
    public var blockCount: UInt64
    /// Writes and unmaps are refused.
    public var readOnly: Bool
    /// Unmap (discard, punch hole) is supported.
    public var canUnmap: Bool
    /// Unmapped ranges read back as zeroes.
    public var unmapReadsZeroes: Bool
    /// Offsets and lengths must be multiples of this (1: any byte range).
    public var alignment: Int

    public init(blockSize: Int, blockCount: UInt64, readOnly: Bool = false, canUnmap: Bool = false,
                unmapReadsZeroes: Bool = false, alignment: Int = 1) {
        self.blockSize = blockSize
        self.blockCount = blockCount
        self.readOnly = readOnly
        self.canUnmap = canUnmap
        self.unmapReadsZeroes = unmapReadsZeroes
        self.alignment = alignment
    }

    /// The device's size in bytes.
    public var byteCount: UInt64 { blockCount * UInt64(blockSize) }
}

/// What a block request does.
public enum BlockOperation: Sendable, Hashable {
    /// Reads `length` bytes at `offset` into the buffer.
    case read
    /// Writes `length` bytes of the buffer at `offset`; with `fua` the data is on stable storage
    /// before the request completes.
    case write(fua: Bool)
    /// Everything completed before is on stable storage when this completes.
    case flush
    /// The range is no longer needed (it may read back as zeroes, see ``BlockGeometry/unmapReadsZeroes``).
    case unmap
}

/// Why a block request failed.
public enum BlockIOError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The range runs past the end of the device.
    case outOfRange
    /// A write or unmap on a read-only device.
    case readOnly
    /// An offset or length that is not a multiple of the device's alignment.
    case misaligned
    /// A read or write without a buffer, or one too small for the length.
    case bufferTooSmall
    /// The device does not do this (unmap on a file system without hole punching).
    case unsupported
    /// The backing storage is out of space.
    case noSpace
    /// The backing storage cannot be reached.
    case notReady
    /// The system call failed with this errno.
    case io(Int32)

    public var description: String {
        switch self {
        case .outOfRange: "range beyond the end of the device"
        case .readOnly: "the device is read-only"
        case .misaligned: "offset or length not aligned"
        case .bufferTooSmall: "no buffer, or one too small"
        case .unsupported: "not supported by the device"
        case .noSpace: "no space left"
        case .notReady: "the device is not ready"
        case .io(let e): "I/O error: \(String(cString: strerror(e))) (errno \(e))"
        }
    }
}

/// One request to a ``BlockDevice``. It owns the buffer its data is in (reads and writes), from
/// `bufferOffset`, until the completion hands it back.
public struct BlockRequest: ~Copyable {
    public var operation: BlockOperation
    /// Byte offset on the device.
    public var offset: UInt64
    /// Bytes to read, write or unmap (0 for a flush).
    public var length: Int
    /// The data's buffer (reads and writes), nil otherwise.
    public var buffer: IOBuffer?
    /// Where in the buffer the data starts.
    public var bufferOffset: Int
    /// The submitter's tag, returned with the completion.
    public var tag: UInt64

    public init(_ operation: BlockOperation, offset: UInt64 = 0, length: Int = 0, buffer: consuming IOBuffer? = nil,
                bufferOffset: Int = 0, tag: UInt64 = 0) {
        self.operation = operation
        self.offset = offset
        self.length = length
        self.buffer = buffer
        self.bufferOffset = bufferOffset
        self.tag = tag
    }

    /// The buffer's capacity, nil without one.
    public var bufferCapacity: Int? {
        switch buffer {
        case .some(let b): b.capacity
        case .none: nil
        }
    }
}

/// A completed request: its tag, the bytes it moved or why it failed, and its buffer back.
public struct BlockCompletion: ~Copyable {
    public var tag: UInt64
    public var result: Result<Int, BlockIOError>
    public var buffer: IOBuffer?

    public init(tag: UInt64, result: Result<Int, BlockIOError>, buffer: consuming IOBuffer?) {
        self.tag = tag
        self.result = result
        self.buffer = buffer
    }

    /// Takes the buffer out (nil afterwards).
    public mutating func takeBuffer() -> IOBuffer? { buffer.take() }
}

/// Whether a device can take I/O (TEST UNIT READY asks).
public enum BlockDeviceReadiness: Sendable, Hashable {
    case ready
    /// The backing storage is there but cannot be reached now.
    case notReady
    /// There is no backing storage.
    case mediumNotPresent
}

/// A block device the storage layer reads and writes at byte offsets, in the shape of an
/// io_uring: requests are submitted (each with the buffer it owns and a tag), and completions
/// are reaped later, in any order. At most ``queueDepth`` requests are in flight.
///
/// A device belongs to one thread (the one that submits and reaps), as a ring does. Backends:
/// ``SynchronousFileBlockDevice`` (pread/pwrite on a file, each request done at once); the
/// control node's backend over an io_uring (registered buffers: an ``IOBufferPool``'s memory)
/// and over iSCSI take the same requests and complete them when the kernel or the SAN does.
public protocol BlockDevice: AnyObject {
    var geometry: BlockGeometry { get }
    /// Requests that may be in flight at once.
    var queueDepth: Int { get }
    /// Requests submitted and not yet reaped.
    var inFlight: Int { get }
    /// Whether the device can take I/O now.
    var readiness: BlockDeviceReadiness { get }

    /// Starts `request`. The caller keeps ``inFlight`` below ``queueDepth``; a request the device
    /// refuses (range, alignment, read-only, buffer) completes with the error, never traps.
    func submit(_ request: consuming BlockRequest)

    /// Hands every completed request to `body`; with `waiting`, first blocks until at least one
    /// has completed (when any is in flight). Returns how many were handed over.
    @discardableResult
    func reap(waiting: Bool, _ body: (consuming BlockCompletion) -> Void) -> Int
}

extension BlockDevice {
    public var readiness: BlockDeviceReadiness { .ready }

    /// Submits `request` and waits for its completion: for a caller that has nothing else in
    /// flight on this device (a logical unit executing one command, an NBD connection serving one
    /// request at a time). Completions of other requests would be lost, so it requires none.
    public func perform(_ request: consuming BlockRequest) -> BlockCompletion {
        precondition(inFlight == 0, "perform needs a device with nothing else in flight")
        let tag = request.tag
        submit(request)
        var done: BlockCompletion? = nil
        var finished = false
        while !finished {
            reap(waiting: true) { (c: consuming BlockCompletion) in
                done = consume c
                finished = true
            }
        }
        switch consume done {
        case .some(let c):
            precondition(c.tag == tag, "a completion of another request")
            return c
        case .none:
            fatalError("unreachable")
        }
    }

    /// Checks `request` against the geometry: what ``submit(_:)`` of any backend refuses first.
    public func check(_ request: borrowing BlockRequest) -> BlockIOError? {
        let g = geometry
        switch request.operation {
        case .flush:
            return nil
        case .write, .unmap:
            if g.readOnly { return .readOnly }
        case .read:
            break
        }
        if case .unmap = request.operation, !g.canUnmap { return .unsupported }
        guard request.length >= 0, request.offset <= g.byteCount,
              UInt64(request.length) <= g.byteCount - request.offset
        else { return .outOfRange }
        if g.alignment > 1 {
            let a = UInt64(g.alignment)
            guard request.offset % a == 0, UInt64(request.length) % a == 0 else { return .misaligned }
        }
        switch request.operation {
        case .read, .write:
            guard let capacity = request.bufferCapacity, request.bufferOffset >= 0,
                  request.bufferOffset <= capacity, request.length <= capacity - request.bufferOffset
            else { return .bufferTooSmall }
        default:
            break
        }
        return nil
    }
}
