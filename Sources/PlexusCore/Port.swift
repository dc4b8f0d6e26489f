import CPlexus
#if canImport(Glibc)
import Glibc
#endif

/// One established (or free) VI number on a port. `peer` is first so its address is the
/// entry's address: in-flight sends point the kernel at it.
struct VIEntry {
    var peer = sockaddr_in()
    var established = false
    var remoteVI: UInt32 = 0
    /// Receives posted and not yet consumed (the VI's receive queue depth).
    var posted: UInt64 = 0
    var counters = VICounters()
    /// Bumped each time the number is established, so rights granted to an earlier
    /// establishment (RDMA regions) do not pass to a later one.
    var generation: UInt32 = 0
    /// The largest datagram sent to this peer: the port's, or less when the peer's adapter has
    /// a smaller MTU (frames above it are segmented).
    var maxDatagram: Int32 = 0
    /// Whether the peer has alternate addresses on this fabric (``Port/peerSets``): frames from
    /// any of them are the peer's, and `peer` is the one sends go to now.
    var alternates = false
}

/// A node's port on one fabric: a UDP socket, its receive ring, and its VI table.
///
/// The VI table is an array indexed by VI number, so demultiplexing an arriving frame is one
/// bounds check and one load (seed, "Giganet Driver": a port keeps up to 1024 VIs apart with
/// hardware protection; Plexus keeps 16384 by default).
final class Port {
    let fabric: Fabric
    let fd: Int32
    let address: FabricAddress
    let maxDatagram: Int
    let ring: ReceiveRing
    let msg: UnsafeMutablePointer<msghdr>
    let table: UnsafeMutablePointer<VIEntry>
    let tableCapacity: Int
    var counters = PortCounters()
    /// The socket's cumulative drop count as the kernel last reported it (SO_RXQ_OVFL, 32 bits,
    /// wrapping); `counters.receiveOverruns` adds up its increases.
    var dropsReported: UInt32 = 0
    var receiveArmed = false
    /// VIs established on this port.
    var established = 0
    /// Faults injected under this port, if any.
    var faults: FaultState?
    /// VI number → its peer's addresses on this fabric, for VIs established with alternates.
    /// Made once per VI number and kept (queued sends may point into a set).
    var peerSets: [UInt32: PeerAddresses] = [:]
    let info: EngineInfo.PortInfo

    // Busy-poll receive: one recvmmsg of up to `pollBatch` datagrams per loop turn.
    static let pollBatch = 32
    let pollMsgs: UnsafeMutablePointer<plx_mmsghdr>
    let pollIov: UnsafeMutablePointer<iovec>
    let pollNames: UnsafeMutablePointer<sockaddr_in>
    let pollIDs: FixedTable<UInt16>
    /// Room for each polled datagram's control messages (the SO_RXQ_OVFL drop count).
    let pollControl: UnsafeMutableRawPointer
    var pollArmed = 0
    /// Whether the last read found more than the one datagram it asked for (use recvmmsg).
    var pollBacklog = false

    // Busy-poll send: the turn's sends, flushed with one sendmmsg per port per turn.
    static let sendBatch = 64
    let sendMsgs: UnsafeMutablePointer<plx_mmsghdr>
    let sendIov: UnsafeMutablePointer<iovec>
    let sendSlots: FixedTable<UInt32>
    let doneSlots: FixedTable<UInt32>
    let doneErrors: FixedTable<Int32>
    var pendingSends = 0
    /// Set when a frame of this turn went to the ring (segments, zero-copy, a full batch): the
    /// turn's later frames follow it there, so a VI's frames leave in the order they were sent.
    var directBlocked = false

    // Blocking mode: the turn's sends, grouped into UDP GSO sendmsgs before the submission.
    let batchSlot: FixedTable<UInt32>
    let batchBytes: FixedTable<Int>
    let batchPeer: UnsafeMutablePointer<UnsafeMutableRawPointer>
    var batchCount = 0
    /// Whether the kernel takes UDP_SEGMENT on this socket (cleared if a GSO send is refused).
    var gsoAvailable: Bool

    init(fabric: Fabric, configuration c: EngineConfiguration, ring uring: UnsafeMutablePointer<io_uring>,
         pool: FramePool) throws(PlexusError) {
        self.fabric = fabric
        let want = fabric == .a ? c.fabricA : c.fabricB
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system("socket() for fabric \(fabric)") }
        var ok = false
        defer { if !ok { close(fd) } }
        // Plexus segments; the kernel must never fragment (seed: fixed-size fabric cells).
        var pmtu: Int32 = IP_PMTUDISC_DO
        setsockopt(fd, Int32(IPPROTO_IP), IP_MTU_DISCOVER, &pmtu, socklen_t(MemoryLayout<Int32>.size))
        func setBuffer(_ force: Int32, _ plain: Int32) {
            var size = Int32(clamping: c.socketBufferBytes)
            if setsockopt(fd, SOL_SOCKET, force, &size, 4) != 0 {
                setsockopt(fd, SOL_SOCKET, plain, &size, 4)
            }
        }
        setBuffer(SO_RCVBUFFORCE, SO_RCVBUF)
        setBuffer(SO_SNDBUFFORCE, SO_SNDBUF)
        // Overruns: when the socket's receive queue is full the kernel drops datagrams and counts
        // them. With SO_RXQ_OVFL it attaches that count to each later datagram, in the control
        // bytes the receive already returns: nothing at all while the socket has never dropped,
        // then one cmsg per datagram read in the same call, and no syscall. (SO_MEMINFO or
        // /proc/net/udp would cost a syscall, or a file read, per look.)
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, plx_SO_RXQ_OVFL, &on, socklen_t(MemoryLayout<Int32>.size))
        var sa = want.sockaddr
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw .system("bind fabric \(fabric) port to \(want)") }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        func get(_ opt: Int32) -> Int {
            var v: Int32 = 0
            var l = socklen_t(4)
            getsockopt(fd, SOL_SOCKET, opt, &v, &l)
            return Int(v)
        }
        self.fd = fd
        self.address = FabricAddress(bound)
        self.maxDatagram = c.maxDatagram
        self.ring = try ReceiveRing(ring: uring, entries: c.receiveBuffers, groupID: UInt16(fabric.rawValue),
                                    pool: pool, hugePages: c.hugePages, polled: c.pollMode == .busyPoll)
        pollMsgs = .allocate(capacity: Self.pollBatch)
        pollMsgs.initialize(repeating: plx_mmsghdr(), count: Self.pollBatch)
        pollIov = .allocate(capacity: Self.pollBatch)
        pollNames = .allocate(capacity: Self.pollBatch)
        pollNames.initialize(repeating: sockaddr_in(), count: Self.pollBatch)
        pollIDs = FixedTable(repeating: 0, count: Self.pollBatch)
        pollControl = .allocate(byteCount: Self.pollBatch * Int(plx_RECEIVE_CONTROL_SPACE), alignment: 8)
        batchSlot = FixedTable(repeating: 0, count: c.poolFrames)
        batchBytes = FixedTable(repeating: 0, count: c.poolFrames)
        batchPeer = .allocate(capacity: c.poolFrames)
        var probe: Int32 = 1200
        if c.udpSegmentationOffload && setsockopt(fd, Int32(IPPROTO_UDP), 103 /* UDP_SEGMENT */, &probe, 4) == 0 {
            probe = 0
            setsockopt(fd, Int32(IPPROTO_UDP), 103, &probe, 4)
            gsoAvailable = true
        } else {
            gsoAvailable = false
        }
        sendMsgs = .allocate(capacity: Self.sendBatch)
        sendMsgs.initialize(repeating: plx_mmsghdr(), count: Self.sendBatch)
        sendIov = .allocate(capacity: Self.sendBatch)
        sendSlots = FixedTable(repeating: 0, count: Self.sendBatch)
        doneSlots = FixedTable(repeating: 0, count: Self.sendBatch)
        doneErrors = FixedTable(repeating: 0, count: Self.sendBatch)
        for i in 0..<Self.sendBatch {
            sendMsgs[i].msg_hdr.msg_iov = sendIov + i
            sendMsgs[i].msg_hdr.msg_iovlen = 1
            sendMsgs[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        for i in 0..<Self.pollBatch {
            pollMsgs[i].msg_hdr.msg_iov = pollIov + i
            pollMsgs[i].msg_hdr.msg_iovlen = 1
            pollMsgs[i].msg_hdr.msg_name = UnsafeMutableRawPointer(pollNames + i)
            pollMsgs[i].msg_hdr.msg_control = pollControl + i * Int(plx_RECEIVE_CONTROL_SPACE)
            pollMsgs[i].msg_hdr.msg_controllen = Int(plx_RECEIVE_CONTROL_SPACE)
        }
        msg = .allocate(capacity: 1)
        msg.initialize(to: msghdr())
        msg.pointee.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
        msg.pointee.msg_controllen = Int(plx_RECEIVE_CONTROL_SPACE)
        tableCapacity = c.maxVIs
        table = .allocate(capacity: c.maxVIs)
        table.initialize(repeating: VIEntry(), count: c.maxVIs)
        info = EngineInfo.PortInfo(
            fabric: fabric.description, address: FabricAddress(bound).description,
            maxDatagramBytes: c.maxDatagram, requestedSocketBufferBytes: c.socketBufferBytes,
            receiveBufferBytes: get(SO_RCVBUF), sendBufferBytes: get(SO_SNDBUF), receiveBuffers: c.receiveBuffers)
        ok = true
    }

    deinit {
        close(fd)
        msg.deallocate()
        table.deallocate()
        pollMsgs.deallocate()
        pollIov.deallocate()
        pollNames.deallocate()
        pollControl.deallocate()
        batchPeer.deallocate()
        sendMsgs.deallocate()
        sendIov.deallocate()
    }

    /// Reads the socket's drop count from the control bytes that came with one datagram and
    /// counts the datagrams dropped since the last report as receive overruns.
    @inline(__always)
    func noteControl(_ control: UnsafeRawPointer, length: Int) {
        let reported = plx_drop_count(control, length)
        guard reported >= 0 else { return }
        let now = UInt32(truncatingIfNeeded: reported)
        let new = now &- dropsReported
        // The kernel's count only grows (it wraps at 32 bits); a step back is a datagram queued
        // before one already read, and tells nothing new.
        guard new != 0, new < 1 << 31 else { return }
        dropsReported = now
        counters.receiveOverruns &+= UInt64(new)
    }

    /// Frames of the largest size (16896-byte payload) that the socket's receive queue holds
    /// before the kernel drops what arrives (an overrun). The kernel charges each queued
    /// datagram its whole buffer (`truesize`), measured here at the datagram's size plus about
    /// 832 bytes; 1024 is allowed. `SO_RCVBUF` as read back is the charge limit (the kernel
    /// doubles the value set). A frame above the port's largest datagram travels as segments,
    /// each charged. At least 1: an empty socket always takes one datagram.
    var receiveQueueFrames: Int { receiveQueueFrames(datagramsUpTo: maxDatagram) }

    /// The same, for frames that arrive as datagrams of at most `largest` bytes (a peer with a
    /// smaller MTU sends more, smaller segments, each charged).
    func receiveQueueFrames(datagramsUpTo largest: Int) -> Int {
        let maxDatagram = max(FrameLayout.headerSize + 1, min(largest, self.maxDatagram))
        let frame = FrameLayout.headerSize + FrameLayout.maxPayload
        let chunk = maxDatagram - FrameLayout.headerSize
        let datagrams = frame <= maxDatagram ? 1 : (FrameLayout.maxPayload + chunk - 1) / chunk
        let datagramBytes = frame <= maxDatagram ? frame : maxDatagram
        let charge = datagrams * (datagramBytes + 1024)
        return max(1, info.receiveBufferBytes / charge - 1)
    }

    @inline(__always)
    func entry(_ number: UInt32) -> UnsafeMutablePointer<VIEntry>? {
        Int(number) < tableCapacity && number != 0 ? table + Int(number) : nil
    }
}

@available(*, unavailable)
extension Port: Sendable {}

/// Reads a sysctl integer such as `/proc/sys/net/core/rmem_max`.
func readSysctl(_ path: String) -> Int? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 64)
    let n = read(fd, &buf, 63)
    guard n > 0 else { return nil }
    return Int(String(decoding: buf[0..<n], as: UTF8.self).trimmedWhitespace)
}

extension String {
    /// The string without leading and trailing spaces, tabs and newlines.
    var trimmedWhitespace: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
