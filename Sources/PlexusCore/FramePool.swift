import CPlexus
#if canImport(Glibc)
import Glibc
#endif

/// A pool of fixed frame slots carved from ``RegisteredMemory``.
///
/// Each slot holds a 64-byte header followed by up to 16896 bytes of payload. Slots are handed
/// out as non-copyable ``Frame`` values and come back when the frame is sent (after the kernel's
/// completion) or dropped. Take and release are O(1) on a free-index stack and never allocate.
/// The pool is confined to its engine's thread.
public final class FramePool {
    /// Bytes from one slot to the next: header + maximum payload (a multiple of 64).
    public static let slotStride = FrameLayout.headerSize + FrameLayout.maxPayload

    public let memory: RegisteredMemory
    /// Number of slots.
    public let capacity: Int
    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline let freeStack: UnsafeMutablePointer<UInt32>
    @usableFromInline var freeCount: Int
    /// Per-slot bookkeeping for operations in flight (engine use).
    let meta: UnsafeMutablePointer<SlotMeta>
    /// Frames taken and not yet returned (held by code, or owned by the kernel).
    public var outstanding: Int { capacity - freeCount }
    /// Frames that can be taken now.
    public var available: Int { freeCount }
    /// Times ``take()`` found the pool empty (back-pressure seen by a caller).
    public private(set) var emptyTakes: UInt64 = 0

    struct SlotMeta {
        var vi: UInt32 = 0
        var fabric: UInt8 = 0
        var pendingOps: UInt16 = 0
        /// Bytes of the frame's single datagram (header included), for a plain resend.
        var wireBytes: UInt32 = 0
        var failed: Bool = false
        var errno: Int32 = 0
        /// Hand the frame back to the driver on completion instead of releasing it.
        var returnToSender = false
        var payloadLength: UInt32 = 0
    }

    public init(slots: Int, hugePages: HugePagePolicy = .ifAvailable) throws(PlexusError) {
        guard slots > 0, slots <= Int(UInt32.max >> 2) else {
            throw PlexusError(.configuration, "a frame pool needs between 1 and 2^30 slots, not \(slots)")
        }
        let memory = try RegisteredMemory(size: slots * Self.slotStride, hugePages: hugePages)
        self.memory = memory
        self.capacity = slots
        self.base = memory.base
        self.freeStack = .allocate(capacity: slots)
        for i in 0..<slots { freeStack[i] = UInt32(slots - 1 - i) }
        self.freeCount = slots
        self.meta = .allocate(capacity: slots)
        meta.initialize(repeating: SlotMeta(), count: slots)
    }

    deinit {
        freeStack.deallocate()
        meta.deallocate()
    }

    /// Takes a free frame, or returns nil when every slot is in use.
    ///
    /// An empty pool is back-pressure: wait for sends to complete (the engine returns their
    /// frames) rather than allocating. - Complexity: O(1).
    @inlinable
    public func take() -> Frame? {
        guard freeCount > 0 else {
            noteEmpty()
            return nil
        }
        freeCount -= 1
        return Frame(pool: self, slot: freeStack[freeCount])
    }

    @usableFromInline func noteEmpty() { emptyTakes &+= 1 }

    /// Returns a slot to the pool. - Complexity: O(1).
    @inlinable
    func release(_ slot: UInt32) {
        precondition(freeCount < capacity, "frame released twice")
        freeStack[freeCount] = slot
        freeCount += 1
    }

    @inlinable
    func slotPointer(_ slot: UInt32) -> UnsafeMutableRawPointer {
        base + Int(slot) * Self.slotStride
    }

    /// The first payload byte of a slot.
    @inline(__always)
    func payloadPointer(_ slot: UInt32) -> UnsafeMutableRawPointer {
        slotPointer(slot) + FrameLayout.headerSize
    }
}

@available(*, unavailable)
extension FramePool: Sendable {}

/// One frame buffer in registered memory, owned by exactly one place at a time.
///
/// `Frame` is non-copyable: code that fills it owns it, `Engine.send(_:on:)` consumes it, and
/// from then on the compiler stops anyone touching it while the kernel owns the memory. When a
/// `Frame` is dropped without being sent, its slot goes back to the pool.
public struct Frame: ~Copyable {
    @usableFromInline unowned(unsafe) let pool: FramePool
    @usableFromInline let slot: UInt32
    /// Bytes of payload to send. Starts at 0; at most ``capacity``.
    public var length: Int = 0 {
        didSet { precondition(length >= 0 && length <= FrameLayout.maxPayload, "frame length out of range") }
    }

    @inlinable
    init(pool: FramePool, slot: UInt32) {
        self.pool = pool
        self.slot = slot
    }

    deinit { pool.release(slot) }

    /// The largest payload a frame holds: 16896 bytes.
    public var capacity: Int { FrameLayout.maxPayload }

    /// Gives `body` the whole payload area (``capacity`` bytes) to fill in place.
    @inlinable
    public mutating func withUnsafeMutablePayload<R, E: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        try body(UnsafeMutableRawBufferPointer(start: pool.slotPointer(slot) + FrameLayout.headerSize,
                                               count: FrameLayout.maxPayload))
    }

    /// Gives `body` the first ``length`` bytes of the payload.
    @inlinable
    public func withUnsafePayload<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: pool.slotPointer(slot) + FrameLayout.headerSize, count: length))
    }

    /// The payload area as a mutable span over registered memory.
    public var mutablePayload: MutableRawSpan {
        @_lifetime(&self)
        mutating get {
            let buf = UnsafeMutableRawBufferPointer(start: pool.slotPointer(slot) + FrameLayout.headerSize,
                                                    count: FrameLayout.maxPayload)
            let span = buf.mutableBytes
            return _overrideLifetime(span, mutating: &self)
        }
    }

    /// Copies `bytes` into the payload and sets ``length`` (a convenience; the data path fills
    /// frames in place).
    public mutating func setPayload(_ bytes: some Collection<UInt8>) {
        precondition(bytes.count <= FrameLayout.maxPayload, "payload larger than a frame")
        withUnsafeMutablePayload { buf in buf.copyBytes(from: bytes) }
        length = bytes.count
    }

    /// The pool slot this frame occupies: stable while the frame lives, and never shared with
    /// another live frame (the reliability layer uses it to recognise a frame coming back).
    package var poolSlot: UInt32 { slot }

    /// Hands the slot to the engine (which now owns it) without returning it to the pool.
    @usableFromInline
    consuming func surrender() -> UInt32 {
        let s = slot
        discard self
        return s
    }
}

@available(*, unavailable)
extension Frame: Sendable {}
