import CPlexus
#if canImport(Glibc)
import Glibc
#endif

// Sending many datagrams with few syscalls: UDP GSO runs in blocking mode, one sendmmsg per
// port per turn in busy-poll mode.

extension Engine {
    /// Blocking mode: turns the turn's queued sends into SQEs. Runs of datagrams of one size to
    /// one peer (up to 64, at most 65507 bytes) become one sendmsg with a UDP_SEGMENT control
    /// message; the kernel segments it, so the syscall, route lookup and socket work are paid
    /// once per run instead of once per datagram. A lone datagram is a plain send.
    func flushBatched(_ port: Port) {
        let n = port.batchCount
        port.batchCount = 0
        var i = 0
        while i < n {
            // Datagrams group by destination address (not by VI: many VIs share a peer port).
            let peer = port.batchPeer[i]
            let destination = Self.addressKey(peer)
            let size = port.batchBytes[i]
            var j = i + 1
            var total = size
            while j < n, j - i < Self.gsoMaxSegments, port.batchBytes[j] == size,
                  total + size <= FrameLayout.maxDatagram, Self.addressKey(port.batchPeer[j]) == destination {
                total += size
                j += 1
            }
            if j - i == 1 || gsoFree.isEmpty {
                for k in i..<j { plainSend(port, slot: port.batchSlot[k], bytes: port.batchBytes[k], peer: port.batchPeer[k]) }
                i = j
                continue
            }
            let r = gsoFree.pop()!
            let iov = gsoIov + r * Self.gsoMaxSegments
            for k in i..<j {
                iov[k - i] = iovec(iov_base: pool.slotPointer(port.batchSlot[k]), iov_len: size)
                gsoSlots[r * Self.gsoMaxSegments + k - i] = port.batchSlot[k]
            }
            gsoCount[r] = j - i
            gsoFabric[r] = port.fabric.rawValue
            let control = gsoControl + r * 24
            control.storeBytes(of: 18, toByteOffset: 0, as: Int.self)                // cmsg_len = CMSG_LEN(2)
            control.storeBytes(of: Int32(IPPROTO_UDP), toByteOffset: 8, as: Int32.self)  // SOL_UDP
            control.storeBytes(of: Int32(103), toByteOffset: 12, as: Int32.self)     // UDP_SEGMENT
            control.storeBytes(of: UInt16(size), toByteOffset: 16, as: UInt16.self)
            gsoMsg[r].msg_name = peer
            gsoMsg[r].msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            gsoMsg[r].msg_iov = iov
            gsoMsg[r].msg_iovlen = j - i
            gsoMsg[r].msg_control = control
            gsoMsg[r].msg_controllen = 24
            let sqe = nextSQE()
            io_uring_prep_sendmsg(sqe, port.fd, gsoMsg + r, 0)
            io_uring_sqe_set_data64(sqe, Self.data(.gso, UInt64(r)))
            inflight += 1
            port.counters.gsoBatches &+= 1
            port.counters.gsoDatagrams &+= UInt64(j - i)
            i = j
        }
    }

    /// IPv4 address and port of a sockaddr_in as one comparable value.
    @inline(__always)
    static func addressKey(_ p: UnsafeMutableRawPointer) -> UInt64 {
        let sa = p.assumingMemoryBound(to: sockaddr_in.self)
        return UInt64(sa.pointee.sin_addr.s_addr) << 16 | UInt64(sa.pointee.sin_port)
    }

    @inline(__always)
    func plainSend(_ port: Port, slot: UInt32, bytes: Int, peer: UnsafeMutableRawPointer) {
        let sqe = nextSQE()
        io_uring_prep_send(sqe, port.fd, pool.slotPointer(slot), bytes, 0)
        io_uring_prep_send_set_addr(sqe, UnsafeRawPointer(peer).assumingMemoryBound(to: sockaddr.self),
                                    UInt16(MemoryLayout<sockaddr_in>.size))
        io_uring_sqe_set_data64(sqe, Self.data(.send, UInt64(slot)))
        inflight += 1
    }

    func onBatchDone(_ r: UInt32, res: Int32) {
        let r = Int(r)
        let count = gsoCount[r]
        gsoFree.push(r)
        if res == -EIO || res == -EINVAL || res == -EOPNOTSUPP {
            // The path refuses GSO (e.g. a device without checksum offload): stop batching on
            // this port and send the group's datagrams one by one instead of failing them.
            let port = self.port(Fabric(rawValue: gsoFabric[r])!)
            port.gsoAvailable = false
            for k in 0..<count {
                let slot = gsoSlots[r * Self.gsoMaxSegments + k]
                pool.meta[Int(slot)].pendingOps += 1
                plainSend(port, slot: slot, bytes: Int(pool.meta[Int(slot)].wireBytes), peer: gsoMsg[r].msg_name)
                completeOp(slot: slot, res: 0)
            }
            return
        }
        for k in 0..<count { completeOp(slot: gsoSlots[r * Self.gsoMaxSegments + k], res: res) }
    }

    /// Busy-poll mode: hands the turn's queued sends of a port to the kernel in one sendmmsg.
    /// Sends the socket cannot take now (EAGAIN) stay queued for the next turn; a send the
    /// kernel refuses completes with its errno.
    func flushDirectSends(_ port: Port) {
        let n = port.pendingSends
        guard n > 0 else { return }
        var start = 0
        var done = 0
        while start < n {
            let r: Int
            if n - start == 1 {
                // One datagram: sendto is the cheaper syscall.
                let m = port.sendMsgs[start].msg_hdr
                let sent = sendto(port.fd, port.sendIov[start].iov_base, port.sendIov[start].iov_len, Int32(MSG_DONTWAIT),
                                  m.msg_name.assumingMemoryBound(to: sockaddr.self), m.msg_namelen)
                r = sent >= 0 ? 1 : -Int(errno)
            } else {
                r = Int(plx_sendmmsg(port.fd, port.sendMsgs + start, UInt32(n - start), Int32(MSG_DONTWAIT)))
            }
            if r > 0 {
                for k in start..<(start + r) {
                    port.doneSlots[done] = port.sendSlots[k]
                    port.doneErrors[done] = 0
                    done += 1
                }
                start += r
            } else if r == -EAGAIN || r == -ENOBUFS || r == -EINTR || r == 0 {
                break
            } else {
                port.doneSlots[done] = port.sendSlots[start]
                port.doneErrors[done] = Int32(-r)
                done += 1
                start += 1
            }
        }
        // Keep what was not sent at the front, in order.
        if start > 0 && start < n {
            for k in start..<n {
                port.sendIov[k - start] = port.sendIov[k]
                port.sendMsgs[k - start].msg_hdr.msg_name = port.sendMsgs[k].msg_hdr.msg_name
                port.sendSlots[k - start] = port.sendSlots[k]
            }
        }
        port.pendingSends = n - start
        // Completions last: a driver may post new sends from its callback.
        for k in 0..<done { completeOp(slot: port.doneSlots[k], res: -port.doneErrors[k]) }
    }
}
