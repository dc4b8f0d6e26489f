import PlexusCore
#if canImport(Glibc)
import Glibc
#endif

// Epochs: a restarted peer, and giving up on a connection.

extension RCLAN {
    // MARK: - Epochs

    /// Fails every message not yet acknowledged.
    func failPending(_ c: Connection, reason: RVIFailure) {
        closeOpen(c)
        let first = c.ackedMessage + 1
        guard first < c.nextMessage else { return }
        c.stats.messagesFailed &+= c.nextMessage - first
        c.ackedMessage = c.nextMessage - 1
        c.service.sendFailed(on: c.rvi, messages: first..<c.nextMessage, reason: reason, layer: self)
    }

    func peerRestarted(_ c: Connection, epoch: UInt32) {
        failPending(c, reason: .peerRestarted)
        c.restartSequences()
        c.peerEpoch = epoch
        c.stats.peerRestarts &+= 1
        c.service.event(.peerRestarted(epoch: epoch), on: c.rvi, layer: self)
    }

    /// Takes back every message not yet acknowledged on `rvi`, oldest first, so that the caller
    /// can send them another way (the virtual Ethernet driver sends a dead control node's
    /// broadcasts through the other one): `body` sees each message's bytes. The RVI then starts a
    /// new epoch, as after ``RCLANConfiguration/failAfter``, without reporting the messages taken
    /// back as failed. A peer that was only unreachable, not dead, may have received some of them
    /// already: the caller's other way may deliver those twice.
    /// - Returns: how many messages were handed to `body`, and how many could not be read because
    ///   their frame was in the kernel at that moment (those are reported with
    ///   ``RVIDelegate/sendFailed(on:messages:reason:layer:)``).
    @discardableResult
    public func reclaimUnacknowledged(on rvi: RVI, _ body: (RawSpan) -> Void) -> (reclaimed: Int, unreadable: Int) {
        guard let c = live(rvi) else { return (0, 0) }
        closeOpen(c)
        var reclaimed = 0, unreadable = 0
        var s = c.sendBase
        while s < c.nextSeq {
            let i = Int(truncatingIfNeeded: s) & c.sendMask
            let r = c.records[i]
            s += 1
            guard !r.acked else { continue }
            if r.rdma {
                // An RDMA WRITE is not a message to send another way: it fails with the rest.
                _ = c.frames.take(at: i)
                unreadable += Int(r.messages)
                continue
            }
            guard let f = c.frames.take(at: i) else {
                unreadable += Int(r.messages)
                continue
            }
            f.withUnsafePayload { buf in
                _ = Self.forEachMessage(in: buf, coalesced: r.coalesced) { m in
                    body(m.bytes)
                    reclaimed += 1
                    return true
                }
            }
        }
        c.stats.messagesReclaimed &+= UInt64(reclaimed)
        if unreadable == 0 { c.ackedMessage = c.nextMessage - 1 }  // nothing left to report failed
        giveUp(c)
        return (reclaimed, unreadable)
    }

    /// Both legs down past `failAfter` (or a frame the engine would not take): fail what is
    /// pending and start a new epoch, which tells the peer to start over too.
    func giveUp(_ c: Connection) {
        failPending(c, reason: .unreachable)
        c.restartSequences()
        c.epoch = nextEpoch()
        // Still unusable: `failAfter` counts again from now, and the RVI is not announced
        // unusable a second time (a service that reacts to it by giving up again would make
        // the RVI start over at every tick).
        let anyUp = c.legs[0].state == .up || c.legs[0].state == .demoted
            || c.legs[1].state == .up || c.legs[1].state == .demoted
        c.unusableSince = anyUp ? 0 : now
        c.stats.resets &+= 1
        c.service.event(.reset(epoch: c.epoch), on: c.rvi, layer: self)
    }
}
