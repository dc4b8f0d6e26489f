import CPlexus
#if canImport(Glibc)
import Glibc
#endif

// Send completions: a slot returns to the pool (or to its sender) when the last operation that
// reads it completes.

extension Engine {
    @inline(__always)
    func onSendDone(slot: UInt32, res: Int32) {
        completeOp(slot: slot, res: res)
    }

    /// One operation that read the slot has completed (res < 0: it failed). The slot is released
    /// and the driver told when the last one has.
    @inline(__always)
    func completeOp(slot: UInt32, res: Int32) {
        if res < 0 {
            pool.meta[Int(slot)].failed = true
            pool.meta[Int(slot)].errno = -res
        }
        pool.meta[Int(slot)].pendingOps -= 1
        if pool.meta[Int(slot)].pendingOps == 0 { finishSend(slot: slot) }
    }

    @inline(__always)
    func onSegmentDone(_ i: UInt32, res: Int32) {
        let slot = segSlot[Int(i)]
        segFree.push(Int(i))
        completeOp(slot: slot, res: res)
    }

    /// A zero-copy send completes twice: the result, then (if `F_MORE` was set) a notification
    /// once the kernel no longer reads the buffer. The slot is reusable only after the second.
    @inline(__always)
    func onZeroCopy(slot: UInt32, res: Int32, flags: UInt32) {
        let m = pool.meta[Int(slot)]
        let port = self.port(Fabric(rawValue: m.fabric)!)
        if flags & plx_IORING_CQE_F_NOTIF != 0 {
            inflight -= 1
            if UInt32(bitPattern: res) & plx_IORING_NOTIF_USAGE_ZC_COPIED != 0 {
                port.counters.zeroCopyCopied &+= 1
                // The kernel copied anyway (loopback always does): zero-copy does not pay here.
                if configuration.zeroCopy == .auto { zeroCopyActive = false }
            } else if zeroCopyProbesLeft > 0 {
                zeroCopyProbesLeft -= 1
            }
            completeOp(slot: slot, res: 0)
            return
        }
        if (res == -EOPNOTSUPP || res == -EINVAL) && configuration.zeroCopy == .auto,
           let e = port.entry(m.vi)
        {
            // This kernel or device refuses zero-copy sends: stop using them, and send this
            // frame again plainly instead of failing it.
            zeroCopyActive = false
            pool.meta[Int(slot)].pendingOps += 1
            plainSend(port, slot: slot, bytes: Int(m.wireBytes), peer: UnsafeMutableRawPointer(e))
        } else if res < 0 {
            pool.meta[Int(slot)].failed = true
            pool.meta[Int(slot)].errno = -res
        }
        if flags & plx_IORING_CQE_F_MORE == 0 {
            inflight -= 1
            completeOp(slot: slot, res: 0)
        }
    }

    @inline(__always)
    func finishSend(slot: UInt32) {
        let m = pool.meta[Int(slot)]
        let fabric = Fabric(rawValue: m.fabric)!
        let vi = VI(fabric, m.vi)
        let result: SendCompletion = m.failed ? .failed(errno: m.errno) : .sent
        if m.failed {
            let port = self.port(fabric)
            port.counters.sendErrors &+= 1
            if let e = port.entry(m.vi) { e.pointee.counters.sendErrors &+= 1 }
        }
        if m.returnToSender {
            // The sender keeps the frame (e.g. until it is acknowledged); dropping it releases it.
            var frame = Frame(pool: pool, slot: slot)
            frame.length = Int(m.payloadLength)
            if let driver {
                driver.sendCompleted(returning: frame, on: vi, result: result, engine: self)
            }
            return
        }
        pool.release(slot)
        driver?.sendCompleted(on: vi, result: result, engine: self)
    }
}
