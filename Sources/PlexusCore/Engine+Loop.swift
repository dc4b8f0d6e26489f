import CPlexus
#if canImport(Glibc)
import Glibc
#endif

// The loop: each turn submits what the drivers queued, reaps completions and dispatches them,
// reads the ports (and the devices) in busy-poll mode, and runs the drivers' turn.

extension Engine {
    /// Busy-poll: lets the driver flush what it posted while handling the frames just read, and
    /// sends it (and anything else queued for direct send) at once.
    @inline(__always)
    func flushReplies() {
        driver?.engineWillFlush(self)
        if portA.pendingSends > 0 { flushDirectSends(portA) }
        if portB.pendingSends > 0 { flushDirectSends(portB) }
    }

    /// Runs until ``stop()``; then cancels what is in flight and waits for every completion.
    func runLoop() {
        driver?.engineDidStart(self)
        while true {
            turns &+= 1
            // Devices first: a packet a device answered to a frame written into it last turn
            // (a kernel replying to an echo request, synchronously, inside the write) then goes
            // out in this turn's flush, and carries the acknowledgement a bare control frame
            // would otherwise have carried ahead of it.
            if devicesPending && !stopping { readPendingDevices() }
            if !stopping { driver?.engineTurn(self) }
            if let f = portA.faults { releaseHeldFrames(f, port: portA) }
            if let f = portB.faults { releaseHeldFrames(f, port: portB) }
            if portA.pendingSends > 0 { flushDirectSends(portA) }
            if portB.pendingSends > 0 { flushDirectSends(portB) }
            if portA.batchCount > 0 { flushBatched(portA) }
            if portB.batchCount > 0 { flushBatched(portB) }
            portA.directBlocked = false
            portB.directBlocked = false
            let rc: Int32
            if stopping {
                // Issued here, just before the submission, so that a stop() from a driver's own
                // callback takes effect in this turn.
                if !cancelIssued {
                    cancelIssued = true
                    let sqe = nextSQE()
                    io_uring_prep_cancel64(sqe, 0, Int32(plx_IORING_ASYNC_CANCEL_ANY))
                    io_uring_sqe_set_data64(sqe, Self.data(.cancel, 0))
                    inflight += 1
                }
                let queued = portA.pendingSends + portB.pendingSends + portA.batchCount + portB.batchCount
                    + framesHeldByFaults
                if inflight == 0 && queued == 0 { break }
                // Sleep only while a completion is still due and nothing of ours waits to go out.
                if inflight > 0 && queued == 0 {
                    rc = io_uring_submit_and_wait(ring, 1)
                } else {
                    rc = io_uring_submit(ring)
                    if deferTaskrun { _ = io_uring_get_events(ring) }
                }
            } else if configuration.pollMode == .blocking {
                rearmStalledReceives()
                rc = io_uring_submit_and_wait(ring, 1)
            } else {
                // Busy-poll: the sockets are read directly; the ring carries sends, timers and
                // wake-ups, whose deferred completions are collected every few turns.
                rc = io_uring_submit(ring)
                if deferTaskrun && turns & 63 == 0 && io_uring_cq_ready(ring) == 0 { _ = io_uring_get_events(ring) }
                // Read each port that has VIs every turn (a port with none only every 64 turns,
                // to drain and count strays). A reply a driver posts while handling a frame from
                // port A goes out before port B is read: waiting for that read (an empty
                // recvmsg, most turns) would put one syscall on every round trip whose frame
                // came in on leg A. Without devices, the flush follows port A's read. With
                // devices, a device a frame was just written to is read first (the kernel may
                // have answered inside the write), and the flush follows when it gave a packet:
                // the answer leaves carrying the acknowledgement, and a frame with no answer
                // leaves its acknowledgement to the turn's last flush.
                let idleTurn = turns & 63 == 0
                let fabricOnly = devices.isEmpty
                if portA.established > 0 || idleTurn {
                    poll(portA)
                    if fabricOnly { flushReplies() } else if devicesWritten { answerWrites() }
                }
                if portB.established > 0 || idleTurn {
                    poll(portB)
                    if devicesWritten { answerWrites() }
                }
                // Then every device (a non-blocking read that finds nothing is cheap), for what
                // the kernel sends on its own.
                if !fabricOnly { pollDevices() }
                flushReplies()
            }
            if rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME {
                fatalError("io_uring_submit failed: \(String(cString: strerror(-rc)))")
            }
            reap()
        }
        disarmPoll(portA)
        disarmPoll(portB)
        dropAllReassembly()
        closeAllDevices()
        closeAllBlockFiles()
        driver?.engineWillStop(self)
        driver = nil
        // Jobs posted after the wake read was cancelled never ran: fail them now.
        for job in inbox.close() { job(nil) }
    }

    /// Re-arms a multishot receive that ended because the ring had no free buffer (ENOBUFS),
    /// once a buffer has come back. Re-arming at once would spin: the kernel fails again.
    @inline(__always)
    func rearmStalledReceives() {
        if !portA.receiveArmed && portA.ring.lent < portA.ring.entries { armReceive(portA) }
        if !portB.receiveArmed && portB.ring.lent < portB.ring.entries { armReceive(portB) }
    }

    @inline(__always)
    func reap() {
        while true {
            let n = io_uring_peek_batch_cqe(ring, cqes, Self.cqeBatch)
            if n == 0 { return }
            for i in 0..<Int(n) {
                let cqe = cqes[i]!.pointee
                handle(userData: cqe.user_data, res: cqe.res, flags: cqe.flags)
            }
            io_uring_cq_advance(ring, n)
            if n < Self.cqeBatch { return }
        }
    }

    @inline(__always)
    func handle(userData: UInt64, res: Int32, flags: UInt32) {
        let low = userData & 0x00FF_FFFF_FFFF_FFFF
        switch Tag(rawValue: userData >> 56) {
        case .receive:
            onReceive(port(low == 0 ? .a : .b), res: res, flags: flags)
        case .send:
            inflight -= 1
            onSendDone(slot: UInt32(low), res: res)
        case .sendZC:
            onZeroCopy(slot: UInt32(low), res: res, flags: flags)
        case .segment:
            inflight -= 1
            onSegmentDone(UInt32(low), res: res)
        case .internalSend:
            inflight -= 1
            let slot = UInt32(low)
            if res < 0 { port(Fabric(rawValue: pool.meta[Int(slot)].fabric)!).counters.sendErrors &+= 1 }
            pool.release(slot)
        case .timer:
            inflight -= 1
            let i = Int(low)
            timerFree.push(i)
            if res == -ETIME && !stopping { driver?.timerFired(token: timerTokens[i], engine: self) }
        case .wake:
            inflight -= 1
            wakeArmed = false
            for job in inbox.drain() { job(self) }
            if !stopping { armWake() }
        case .cancel:
            inflight -= 1
        case .gso:
            inflight -= 1
            onBatchDone(UInt32(low), res: res)
        case .faultTimer:
            inflight -= 1
            faultTimerArmed = false
            if framesHeldByFaults > 0 { ensureFaultTimer() }
        case .devicePoll:
            onDevicePoll(low, res: res, flags: flags)
        case .blockIO:
            onBlockIO(Int(low), res: res)
        case .fdWatch:
            inflight -= 1
            driver?.fdReady(token: UInt32(truncatingIfNeeded: low), events: res, engine: self)
        case nil:
            preconditionFailure("unknown completion tag \(userData >> 56)")
        }
    }
}
