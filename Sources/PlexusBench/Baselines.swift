import CPlexus
import Foundation
import PlexusCore
import Synchronization

// The baselines: two minimal UDP pairs with no Plexus layers, one on plain send/recv and one on
// io_uring (batched sends, multishot receive into a provided-buffer ring). Every Plexus figure
// is divided by the better of the two, measured in the same run.

enum BaselineMethod: String, CaseIterable, Sendable {
    case plain
    case uring = "io_uring"
    /// Informational: plain sendmsg with UDP_SEGMENT (the kernel facility Plexus batches with).
    /// Not part of the baseline, which is the better of the two minimal pairs above.
    case plainGSO = "plain_gso"
}

enum RawUDP {
    /// A UDP socket bound to `address` with the same buffer sizes Plexus asks for.
    static func open(_ address: FabricAddress, bufferBytes: Int = 4 << 20) throws -> (Int32, FabricAddress) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket: \(String(cString: strerror(errno)))") }
        var size = Int32(bufferBytes)
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, 4) != 0 { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4) }
        if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, 4) != 0 { setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, 4) }
        var sa = socketAddress(address)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw BenchError("bind \(address): \(String(cString: strerror(errno)))") }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return (fd, FabricAddress(ip: UInt32(bigEndian: bound.sin_addr.s_addr), port: UInt16(bigEndian: bound.sin_port)))
    }

    static func socketAddress(_ a: FabricAddress) -> sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = a.port.bigEndian
        sa.sin_addr.s_addr = a.ip.bigEndian
        return sa
    }

    static func connect(_ fd: Int32, to a: FabricAddress) {
        var sa = socketAddress(a)
        _ = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    static func setReceiveTimeout(_ fd: Int32, millis: Int) {
        var tv = timeval(tv_sec: 0, tv_usec: millis * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    // MARK: Plain send/recv

    static func plainSend(fd: Int32, size: Int, nanos: UInt64) -> (sent: UInt64, elapsed: UInt64) {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: 64)
        defer { buf.deallocate() }
        memset(buf, 0x5A, size)
        let start = nowNanos()
        let end = start + nanos
        var sent: UInt64 = 0
        var now = start
        while now < end {
            for _ in 0..<32 where send(fd, buf, size, 0) >= 0 { sent += 1 }
            now = nowNanos()
        }
        return (sent, now - start)
    }

    /// Plain sends grouped like Plexus groups them: up to 64 same-size datagrams per sendmsg
    /// with a UDP_SEGMENT control message.
    static func plainGSOSend(fd: Int32, size: Int, nanos: UInt64) -> (sent: UInt64, elapsed: UInt64) {
        let per = max(1, min(64, FrameLayout.maxDatagram / size))
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size * per, alignment: 64)
        defer { buf.deallocate() }
        memset(buf, 0x5A, size * per)
        var iov = iovec(iov_base: buf, iov_len: size * per)
        let control = UnsafeMutableRawPointer.allocate(byteCount: 24, alignment: 8)
        defer { control.deallocate() }
        control.storeBytes(of: 18, toByteOffset: 0, as: Int.self)
        control.storeBytes(of: Int32(IPPROTO_UDP), toByteOffset: 8, as: Int32.self)
        control.storeBytes(of: Int32(103), toByteOffset: 12, as: Int32.self)
        control.storeBytes(of: UInt16(size), toByteOffset: 16, as: UInt16.self)
        var msg = msghdr()
        withUnsafeMutablePointer(to: &iov) { msg.msg_iov = $0 }
        msg.msg_iovlen = 1
        msg.msg_control = control
        msg.msg_controllen = per > 1 ? 24 : 0
        let start = nowNanos()
        let end = start + nanos
        var sent: UInt64 = 0
        var now = start
        while now < end {
            for _ in 0..<8 where sendmsg(fd, &msg, 0) >= 0 { sent += UInt64(per) }
            now = nowNanos()
        }
        return (sent, now - start)
    }

    static func plainReceive(fd: Int32, stop: borrowing Atomic<Bool>) -> (frames: UInt64, bytes: UInt64) {
        setReceiveTimeout(fd, millis: 20)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 64)
        defer { buf.deallocate() }
        var frames: UInt64 = 0, bytes: UInt64 = 0
        while !stop.load(ordering: .acquiring) {
            let n = recv(fd, buf, 65536, 0)
            if n >= 0 {
                frames += 1
                bytes += UInt64(n)
            }
        }
        return (frames, bytes)
    }

    /// One round trip per sample: send, then wait for the echo (blocking or spinning).
    static func plainPing(fd: Int32, size: Int, count: Int, warmup: Int, busyPoll: Bool) -> [UInt64] {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 64)
        defer { buf.deallocate() }
        var samples = [UInt64]()
        samples.reserveCapacity(count)
        setReceiveTimeout(fd, millis: 200)
        for i in 0..<(count + warmup) {
            let t0 = nowNanos()
            _ = send(fd, buf, size, 0)
            if busyPoll {
                while recv(fd, buf, 65536, Int32(MSG_DONTWAIT)) < 0 {
                    if nowNanos() - t0 > 200_000_000 { break }  // lost: move on (the sample shows it)
                }
            } else {
                _ = recv(fd, buf, 65536, 0)
            }
            if i >= warmup { samples.append(nowNanos() - t0) }
        }
        return samples
    }

    static func plainEcho(fd: Int32, busyPoll: Bool, stop: borrowing Atomic<Bool>) -> UInt64 {
        setReceiveTimeout(fd, millis: 20)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 64)
        defer { buf.deallocate() }
        var echoed: UInt64 = 0
        while !stop.load(ordering: .acquiring) {
            let n = recv(fd, buf, 65536, busyPoll ? Int32(MSG_DONTWAIT) : 0)
            if n >= 0 {
                _ = send(fd, buf, n, 0)
                echoed += 1
            }
        }
        return echoed
    }
}

/// A minimal io_uring UDP endpoint: the same ring set-up as the Plexus engine, none of its layers.
final class UringUDP {
    let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
    let fd: Int32
    let deferTaskrun: Bool
    let bufCount = 256
    let bufSize = 17 * 1024
    var bufMemory: UnsafeMutableRawPointer
    var bufRing: UnsafeMutablePointer<io_uring_buf_ring>? = nil
    var mask: Int32 = 0
    let cqes = UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>.allocate(capacity: 256)

    init(fd: Int32) throws {
        self.fd = fd
        var params = io_uring_params()
        params.flags = plx_IORING_SETUP_SINGLE_ISSUER | plx_IORING_SETUP_DEFER_TASKRUN
        var rc = io_uring_queue_init_params(1024, ring, &params)
        var deferred = true
        if rc < 0 {
            params = io_uring_params()
            rc = io_uring_queue_init_params(1024, ring, &params)
            deferred = false
        }
        guard rc == 0 else { throw BenchError("io_uring_queue_init: \(String(cString: strerror(-rc)))") }
        deferTaskrun = deferred
        bufMemory = UnsafeMutableRawPointer.allocate(byteCount: bufCount * bufSize, alignment: 4096)
    }

    deinit {
        io_uring_queue_exit(ring)
        ring.deallocate()
        bufMemory.deallocate()
        cqes.deallocate()
    }

    func setUpReceiveRing() throws {
        let bytes = bufCount * MemoryLayout<io_uring_buf>.stride
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        var reg = io_uring_buf_reg()
        reg.ring_addr = UInt64(UInt(bitPattern: p))
        reg.ring_entries = UInt32(bufCount)
        reg.bgid = 0
        let rc = io_uring_register_buf_ring(ring, &reg, 0)
        guard rc == 0 else { throw BenchError("io_uring_register_buf_ring: \(String(cString: strerror(-rc)))") }
        let br = p.assumingMemoryBound(to: io_uring_buf_ring.self)
        bufRing = br
        mask = io_uring_buf_ring_mask(UInt32(bufCount))
        io_uring_buf_ring_init(br)
        for i in 0..<bufCount {
            io_uring_buf_ring_add(br, bufMemory + i * bufSize, UInt32(bufSize), UInt16(i), mask, Int32(i))
        }
        io_uring_buf_ring_advance(br, Int32(bufCount))
    }

    func armReceive() {
        let sqe = io_uring_get_sqe(ring)!
        io_uring_prep_recv_multishot(sqe, fd, nil, 0, 0)
        sqe.pointee.flags |= plx_IOSQE_BUFFER_SELECT
        sqe.pointee.buf_group = 0
        io_uring_sqe_set_data64(sqe, 1)
    }

    func giveBack(_ flags: UInt32) {
        let bid = UInt16(truncatingIfNeeded: flags >> plx_IORING_CQE_BUFFER_SHIFT)
        io_uring_buf_ring_add(bufRing!, bufMemory + Int(bid) * bufSize, UInt32(bufSize), bid, mask, 0)
        io_uring_buf_ring_advance(bufRing!, 1)
    }

    func wait(blocking: Bool) {
        if blocking {
            _ = io_uring_submit_and_wait(ring, 1)
        } else {
            _ = io_uring_submit(ring)
            if deferTaskrun && io_uring_cq_ready(ring) == 0 { _ = io_uring_get_events(ring) }
        }
    }

    /// Streams sends of `size` bytes, 32 per submission, until `nanos` have passed.
    func stream(size: Int, nanos: UInt64) -> (sent: UInt64, elapsed: UInt64) {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: 64)
        defer { buf.deallocate() }
        memset(buf, 0x5A, size)
        let start = nowNanos()
        let end = start + nanos
        var inflight = 0
        var sent: UInt64 = 0
        var now = start
        while now < end {
            var queued = 0
            while queued < 32 && inflight < 256, let sqe = io_uring_get_sqe(ring) {
                io_uring_prep_send(sqe, fd, buf, size, 0)
                io_uring_sqe_set_data64(sqe, 2)
                queued += 1
                inflight += 1
            }
            _ = io_uring_submit_and_wait(ring, 1)
            let n = io_uring_peek_batch_cqe(ring, cqes, 256)
            for i in 0..<Int(n) where cqes[i]!.pointee.res >= 0 { sent += 1 }
            inflight -= Int(n)
            io_uring_cq_advance(ring, n)
            now = nowNanos()
        }
        while inflight > 0 {
            _ = io_uring_submit_and_wait(ring, 1)
            let n = io_uring_peek_batch_cqe(ring, cqes, 256)
            inflight -= Int(n)
            io_uring_cq_advance(ring, n)
        }
        return (sent, now - start)
    }

    func receive(stop: borrowing Atomic<Bool>) -> (frames: UInt64, bytes: UInt64) {
        armReceive()
        var frames: UInt64 = 0, bytes: UInt64 = 0
        var ts = __kernel_timespec(tv_sec: 0, tv_nsec: 20_000_000)
        var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
        while !stop.load(ordering: .acquiring) {
            _ = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nil)
            let n = io_uring_peek_batch_cqe(ring, cqes, 256)
            for i in 0..<Int(n) {
                let c = cqes[i]!.pointee
                if c.res > 0 {
                    frames += 1
                    bytes += UInt64(c.res)
                }
                if c.flags & plx_IORING_CQE_F_BUFFER != 0 { giveBack(c.flags) }
                if c.flags & plx_IORING_CQE_F_MORE == 0 { armReceive() }
            }
            io_uring_cq_advance(ring, n)
        }
        return (frames, bytes)
    }

    /// Round trips: a send and the echo's receive per sample.
    func ping(size: Int, count: Int, warmup: Int, busyPoll: Bool) throws -> [UInt64] {
        if bufRing == nil { try setUpReceiveRing() }
        armReceive()
        var failures = 0
        let buf = UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: 64)
        defer { buf.deallocate() }
        var samples = [UInt64]()
        samples.reserveCapacity(count)
        for i in 0..<(count + warmup) {
            let t0 = nowNanos()
            let sqe = io_uring_get_sqe(ring)!
            io_uring_prep_send(sqe, fd, buf, size, 0)
            io_uring_sqe_set_data64(sqe, 2)
            var got = false
            while !got {
                wait(blocking: !busyPoll)
                let n = io_uring_peek_batch_cqe(ring, cqes, 256)
                for k in 0..<Int(n) {
                    let c = cqes[k]!.pointee
                    if c.user_data == 1 {
                        if c.res > 0 { got = true } else { failures += 1 }
                        if c.flags & plx_IORING_CQE_F_BUFFER != 0 { giveBack(c.flags) }
                        if c.flags & plx_IORING_CQE_F_MORE == 0 { armReceive() }
                    }
                }
                io_uring_cq_advance(ring, n)
                if failures > 1000 { throw BenchError("io_uring baseline: receive keeps failing") }
            }
            if i >= warmup { samples.append(nowNanos() - t0) }
        }
        return samples
    }

    func echo(busyPoll: Bool, stop: borrowing Atomic<Bool>) -> UInt64 {
        armReceive()
        var echoed: UInt64 = 0
        var ts = __kernel_timespec(tv_sec: 0, tv_nsec: 20_000_000)
        var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
        var pendingReturn: [UInt32] = []
        while !stop.load(ordering: .acquiring) {
            if busyPoll {
                wait(blocking: false)
            } else {
                _ = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nil)
            }
            let n = io_uring_peek_batch_cqe(ring, cqes, 256)
            for k in 0..<Int(n) {
                let c = cqes[k]!.pointee
                if c.user_data == 1 {
                    if c.res > 0, c.flags & plx_IORING_CQE_F_BUFFER != 0 {
                        // Echo straight out of the provided buffer; it goes back after the send.
                        let bid = Int(c.flags >> plx_IORING_CQE_BUFFER_SHIFT)
                        let sqe = io_uring_get_sqe(ring)!
                        io_uring_prep_send(sqe, fd, bufMemory + bid * bufSize, Int(c.res), 0)
                        io_uring_sqe_set_data64(sqe, 3 << 32 | UInt64(bid))
                        echoed += 1
                    } else if c.flags & plx_IORING_CQE_F_BUFFER != 0 {
                        giveBack(c.flags)
                    }
                    if c.flags & plx_IORING_CQE_F_MORE == 0 { armReceive() }
                } else if c.user_data >> 32 == 3 {
                    pendingReturn.append(UInt32(c.user_data & 0xFFFF) << plx_IORING_CQE_BUFFER_SHIFT)
                }
            }
            io_uring_cq_advance(ring, n)
            for f in pendingReturn { giveBack(f) }
            pendingReturn.removeAll(keepingCapacity: true)
        }
        return echoed
    }
}
