import CPlexus
#if canImport(Glibc)
import Glibc
#endif

/// A port's receive buffers: a provided-buffer ring (io_uring buffer group) whose buffers are
/// slots of registered memory.
///
/// The kernel picks a buffer for each datagram a multishot `recvmsg` receives; Plexus reads the
/// frame in place and hands the buffer back to the ring when the ``InboundFrame`` that wraps it
/// is released. This is the VI receive queue of the seed's "Giganet Driver": buffers the NIC
/// knows about, filled without a copy by the application.
final class ReceiveRing {
    /// io_uring_recvmsg_out (16) + sockaddr_in (16) + control messages (32: the SO_RXQ_OVFL drop
    /// count) + frame header (64) + max payload: 17024 bytes, so the frame starts 64-byte aligned.
    static let bufferSize = 16 + 16 + Int(plx_RECEIVE_CONTROL_SPACE) + FrameLayout.headerSize + FrameLayout.maxPayload
    static let stride = (bufferSize + 63) / 64 * 64

    let memory: RegisteredMemory
    let entries: Int
    let groupID: UInt16
    /// In busy-poll mode the engine reads the socket itself (recvmmsg) into these buffers, and
    /// they are kept on a free stack instead of in a kernel ring.
    let polled: Bool
    let ringMemory: UnsafeMutableRawPointer?
    let ringBytes: Int
    let bufRing: UnsafeMutablePointer<io_uring_buf_ring>?
    let mask: Int32
    let freeIDs: UnsafeMutablePointer<UInt16>
    private(set) var freeCount = 0
    /// The engine's pool, for reassembled frames that live in pool slots.
    unowned(unsafe) let pool: FramePool
    /// Buffers currently lent to code (delivered and not yet released).
    private(set) var lent = 0
    private var registeredWith: UnsafeMutablePointer<io_uring>?

    init(ring: UnsafeMutablePointer<io_uring>, entries: Int, groupID: UInt16, pool: FramePool,
         hugePages: HugePagePolicy, polled: Bool) throws(PlexusError) {
        guard entries > 0, entries <= 32768, entries & (entries - 1) == 0 else {
            throw PlexusError(.configuration, "receive ring entries must be a power of two ≤ 32768, not \(entries)")
        }
        self.memory = try RegisteredMemory(size: entries * Self.stride, hugePages: hugePages)
        self.entries = entries
        self.groupID = groupID
        self.pool = pool
        self.polled = polled
        freeIDs = .allocate(capacity: entries)
        if polled {
            for i in 0..<entries { freeIDs[i] = UInt16(entries - 1 - i) }
            freeCount = entries
            ringMemory = nil
            ringBytes = 0
            bufRing = nil
            mask = 0
            return
        }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        ringBytes = (entries * MemoryLayout<io_uring_buf>.stride + page - 1) / page * page
        guard let p = mmap(nil, ringBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED
        else {
            freeIDs.deallocate()
            throw .system("mmap of the buffer ring")
        }
        ringMemory = p
        let bufRing = p.assumingMemoryBound(to: io_uring_buf_ring.self)
        self.bufRing = bufRing
        var reg = io_uring_buf_reg()
        reg.ring_addr = UInt64(UInt(bitPattern: p))
        reg.ring_entries = UInt32(entries)
        reg.bgid = groupID
        let rc = io_uring_register_buf_ring(ring, &reg, 0)
        if rc < 0 {
            munmap(p, ringBytes)
            freeIDs.deallocate()
            throw PlexusError(.ioUring, "registering a provided-buffer ring of \(entries) buffers", errno: -rc)
        }
        registeredWith = ring
        mask = io_uring_buf_ring_mask(UInt32(entries))
        io_uring_buf_ring_init(bufRing)
        for i in 0..<entries {
            io_uring_buf_ring_add(bufRing, buffer(UInt16(i)), UInt32(Self.stride), UInt16(i), mask, Int32(i))
        }
        io_uring_buf_ring_advance(bufRing, Int32(entries))
    }

    /// Unregisters the ring from io_uring (before the ring is torn down).
    func unregister() {
        if let r = registeredWith {
            _ = io_uring_unregister_buf_ring(r, Int32(groupID))
            registeredWith = nil
        }
    }

    deinit {
        if let ringMemory { munmap(ringMemory, ringBytes) }
        freeIDs.deallocate()
    }

    /// Takes a free buffer (busy-poll mode only).
    @inline(__always)
    func takeFree() -> UInt16 {
        freeCount -= 1
        return freeIDs[freeCount]
    }

    @inline(__always)
    func buffer(_ id: UInt16) -> UnsafeMutableRawPointer {
        memory.base + Int(id) * Self.stride
    }

    @inline(__always)
    func noteLent() { lent += 1 }

    /// Gives a buffer that was never lent back to the kernel.
    @inline(__always)
    func returnBuffer(_ id: UInt16) {
        if let bufRing {
            io_uring_buf_ring_add(bufRing, buffer(id), UInt32(Self.stride), id, mask, 0)
            io_uring_buf_ring_advance(bufRing, 1)
        } else {
            freeIDs[freeCount] = id
            freeCount += 1
        }
    }

    /// Gives a lent buffer back to the kernel, or a reassembly slot back to the pool.
    @inline(__always)
    func recycle(_ token: UInt32) {
        lent -= 1
        if token & InboundFrame.poolBit != 0 {
            pool.release(token & ~InboundFrame.poolBit)
        } else {
            returnBuffer(UInt16(token))
        }
    }
}

@available(*, unavailable)
extension ReceiveRing: Sendable {}

/// A received frame, read in place in the receive buffer the kernel filled.
///
/// Non-copyable: when it is dropped the buffer goes straight back to the port's receive ring
/// (or, for a frame reassembled from segments, back to the frame pool). Hold it only as long as
/// you need the bytes: a held frame is a receive buffer the kernel cannot use.
public struct InboundFrame: ~Copyable {
    static let poolBit: UInt32 = 0x8000_0000
    unowned(unsafe) let owner: ReceiveRing
    let token: UInt32
    let start: UnsafeRawPointer
    /// Payload bytes.
    public let count: Int
    /// The VI it arrived on.
    public let vi: VI
    /// The reliability layer's header fields, as the sender set them.
    public let fields: ReliabilityFields

    init(owner: ReceiveRing, token: UInt32, start: UnsafeRawPointer, count: Int, vi: VI,
         fields: ReliabilityFields = ReliabilityFields()) {
        self.owner = owner
        self.token = token
        self.start = start
        self.count = count
        self.vi = vi
        self.fields = fields
        owner.noteLent()
    }

    deinit { owner.recycle(token) }

    /// Whether the frame lives in a pool frame (a message reassembled from segments) rather than
    /// in a receive buffer: holding it keeps a frame from the engine's send pool.
    public var occupiesPoolFrame: Bool { token & Self.poolBit != 0 }

    /// Gives `body` the payload, in place.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: start, count: count))
    }

    /// The payload as a span over the receive buffer.
    public var bytes: RawSpan {
        @_lifetime(borrow self)
        borrowing get {
            let span = UnsafeRawBufferPointer(start: start, count: count).bytes
            return _overrideLifetime(span, borrowing: self)
        }
    }

    /// Copies the payload out into an array (a convenience that allocates; not for the data path).
    public func copyBytes() -> [UInt8] {
        withUnsafeBytes { Array($0) }
    }
}

@available(*, unavailable)
extension InboundFrame: Sendable {}
