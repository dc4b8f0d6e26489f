#if canImport(Glibc)
import Glibc
#endif

/// Page-aligned memory for block I/O, allocated once and cut into equal slots: the buffers a
/// connection or a logical unit reads into and writes from, so that no request allocates.
///
/// The memory is an anonymous mapping (pages are touched only when used, and are suitable for
/// O_DIRECT and for registering with an io_uring). A pool belongs to one thread; an
/// ``IOBuffer`` keeps its pool alive.
public final class IOBufferPool {
    /// Bytes in each slot (a multiple of the page size).
    public let slotSize: Int
    /// Slots in the pool.
    public let capacity: Int
    let base: UnsafeMutableRawPointer
    let mappedBytes: Int
    private var free: [Int32]

    /// Maps `slots` slots of at least `slotSize` bytes (rounded up to whole pages). Throws the
    /// errno of a failed mmap.
    public init(slots: Int, slotSize: Int) throws(BlockIOError) {
        precondition(slots > 0 && slotSize > 0, "an I/O buffer pool needs slots of some size")
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let size = (slotSize + page - 1) / page * page
        let total = size * slots
        guard let p = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED
        else { throw .io(errno) }
        base = p
        mappedBytes = total
        self.slotSize = size
        capacity = slots
        free = (0..<Int32(slots)).reversed().map { $0 }
    }

    deinit { munmap(base, mappedBytes) }

    /// Buffers not taken.
    public var available: Int { free.count }

    /// A free buffer, or nil when every slot is taken.
    public func take() -> IOBuffer? {
        guard let slot = free.popLast() else { return nil }
        return IOBuffer(pool: self, slot: Int(slot))
    }

    func release(_ slot: Int) { free.append(Int32(slot)) }

    @inline(__always)
    func address(_ slot: Int) -> UnsafeMutableRawPointer { base + slot * slotSize }
}

@available(*, unavailable)
extension IOBufferPool: Sendable {}

/// One slot of an ``IOBufferPool``, owned by exactly one place at a time.
///
/// A block request consumes its buffer and the completion hands it back, so nothing touches
/// the memory while a device (or, for an io_uring backend, the kernel) owns it. Dropped, it
/// returns to its pool.
public struct IOBuffer: ~Copyable {
    // Retained by hand (one retain per buffer, given up in deinit or handed to a
    // ParkedIOBuffer), so that parking can `discard self`: the pool outlives its buffers.
    let unmanagedPool: Unmanaged<IOBufferPool>
    let slot: Int

    var pool: IOBufferPool { unmanagedPool.takeUnretainedValue() }

    init(pool: IOBufferPool, slot: Int) {
        self.unmanagedPool = Unmanaged.passRetained(pool)
        self.slot = slot
    }

    /// Takes over the retain `parked` holds.
    init(parked: ParkedIOBuffer) {
        self.unmanagedPool = parked.unmanagedPool
        self.slot = parked.slot
    }

    deinit {
        pool.release(slot)
        unmanagedPool.release()
    }

    /// The buffer's size in bytes.
    public var capacity: Int { pool.slotSize }

    /// Gives `body` the buffer's memory; the pointer must not escape it.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: pool.address(slot), count: pool.slotSize))
    }

    /// Gives `body` the buffer's memory to fill; the pointer must not escape it.
    public mutating func withUnsafeMutableBytes<R, E: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        try body(UnsafeMutableRawBufferPointer(start: pool.address(slot), count: pool.slotSize))
    }

    /// The buffer as a span.
    public var bytes: RawSpan {
        @_lifetime(borrow self)
        borrowing get {
            let span = UnsafeRawBufferPointer(start: pool.address(slot), count: pool.slotSize).bytes
            return _overrideLifetime(span, borrowing: self)
        }
    }

    /// The buffer as a mutable span.
    public var mutableBytes: MutableRawSpan {
        @_lifetime(&self)
        mutating get {
            let span = UnsafeMutableRawBufferPointer(start: pool.address(slot), count: pool.slotSize).mutableBytes
            return _overrideLifetime(span, mutating: &self)
        }
    }

    /// Hands the slot to a device without returning it to the pool (see ``ParkedIOBuffer``).
    consuming func park() -> ParkedIOBuffer {
        let parked = ParkedIOBuffer(unmanagedPool: unmanagedPool, slot: slot)
        discard self
        return parked
    }
}

@available(*, unavailable)
extension IOBuffer: Sendable {}

/// A buffer a device holds while its request is in flight: the slot, out of the pool and out of
/// the submitter's hands, and the buffer's retain of its pool. ``resume()`` turns it back into
/// the ``IOBuffer`` the completion carries; it must be called exactly once.
struct ParkedIOBuffer {
    let unmanagedPool: Unmanaged<IOBufferPool>
    let slot: Int

    /// The memory, for the device (or the kernel) that owns the request.
    var address: UnsafeMutableRawPointer { unmanagedPool.takeUnretainedValue().address(slot) }
    var capacity: Int { unmanagedPool.takeUnretainedValue().slotSize }

    func resume() -> IOBuffer { IOBuffer(parked: self) }
}
