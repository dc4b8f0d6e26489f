import PlexusCore
import PlexusRCLAN

// A storage target's iSCSI backend: a mapping whose path is an `iscsi://` URL is a LUN on a
// SAN, reached through an ``ISCSISession`` driven from the engine thread. READ, WRITE and
// SYNCHRONIZE CACHE go to the SAN with their data in the processor's staging slot; everything
// else is answered by the ``SCSILogicalUnit`` over the session's geometry, as for a file.

/// One iSCSI session a storage target serves, for ``StorageTarget/sanStatus``.
struct SANEntry {
    let processor: Int
    let session: ISCSISession
    /// The session's ``ISCSISession/failures`` and ``ISCSISession/reconnections`` already counted.
    var failuresSeen: UInt64 = 0
    var reconnectionsSeen: UInt64 = 0
    /// ``PlexusCore/nowNanos()`` of the next reconnection attempt while the session is down.
    var nextAttempt: UInt64 = 0
    /// ``PlexusCore/nowNanos()`` after which a reconnection's login that has not finished is
    /// given up.
    var loginDeadline: UInt64 = 0
}

/// What an operator reads about one iSCSI LUN a storage target uses.
public struct SANStatus: Sendable, Hashable, CustomStringConvertible {
    public var processor: Int
    public var target: UInt32
    public var lun: UInt32
    public var url: String
    public var isUp: Bool
    /// Times the session went down.
    public var failures: UInt64
    public var reconnections: UInt64
    /// Why it last went down.
    public var lastError: String?

    public var description: String {
        "processor \(processor) (target \(target), LUN \(lun)) → \(url): \(isUp ? "up" : "DOWN")"
            + ", \(failures) failures, \(reconnections) reconnections" + (lastError.map { ", last error: \($0)" } ?? "")
    }
}

extension StorageTarget {
    /// iSCSI sessions a target may hold at once (each uses two watch tokens).
    static let maxSANSessions = 256
    /// Time between reconnection attempts of a session that is down.
    static let reconnectIntervalNanos: UInt64 = 1_000_000_000

    /// Every iSCSI LUN of every processor's map: its state, failures and last error.
    public var sanStatus: [SANStatus] {
        var out: [SANStatus] = []
        for s in sessions {
            for u in s.units {
                guard let san = u.san else { continue }
                out.append(SANStatus(processor: s.index, target: u.target, lun: u.lun, url: san.url.description,
                                     isUp: san.isUp, failures: san.failures, reconnections: san.reconnections,
                                     lastError: san.lastError))
            }
        }
        return out
    }

    /// Logs in to the LUN at `url` for processor `processor` (setup: blocks for the login).
    func openSAN(_ url: String, processor: Int, layer: RCLAN) throws(StorageSetupError) -> ISCSISession {
        if sanTokens.isEmpty {
            do {
                sanTokens = try layer.claimBlockIOTokens(UInt32(2 * Self.maxSANSessions), for: self)
            } catch {
                throw .resources("iSCSI watch tokens: \(error)")
            }
        }
        guard let index = sanSessions.firstIndex(where: { $0 == nil }) ?? (sanSessions.count < Self.maxSANSessions
            ? sanSessions.count : nil)
        else {
            throw .resources("\(Self.maxSANSessions) iSCSI sessions already open")
        }
        let san: ISCSISession
        do {
            san = try ISCSISession(url: url, slots: slotsPerProcessor)
        } catch {
            throw .cannotOpen(path: url, reason: "\(error)")
        }
        guard san.geometry.blockSize <= slotSize else {
            throw .cannotOpen(path: url, reason: "its \(san.geometry.blockSize)-byte blocks do not fit a staging slot")
        }
        san.watchToken = sanTokens.lowerBound + UInt32(2 * index)
        if index == sanSessions.count { sanSessions.append(nil) }
        sanSessions[index] = SANEntry(processor: processor, session: san)
        san.pump(engine: layer.engine)
        return san
    }

    /// Closes the session (no logout: the SAN sees the connection close when it is dropped) and
    /// forgets it; its commands in flight end (abandoned slots are freed).
    func closeSAN(_ san: ISCSISession, layer: RCLAN) {
        guard let i = sanSessions.firstIndex(where: { $0?.session === san }), let entry = sanSessions[i] else { return }
        san.close(engine: layer.engine)
        drainSAN(entry, layer: layer)
        sanSessions[i] = nil
    }

    /// Starts the slot's block step on the SAN.
    func submitSAN(_ san: ISCSISession, step: SCSIBlockStep, session: TargetSession, slot: Int, layer: RCLAN) {
        session.slots[slot].phase = .blockIO
        let memory = session.staging.bytes(at: session.staging.offset(ofSlot: slot), length: step.length)?.baseAddress
        let lba = step.offset / UInt64(san.geometry.blockSize)
        guard san.start(slot: slot, operation: step.operation, lba: lba, length: step.length, memory: memory) else {
            counters.backendErrors += 1
            counters.sanCommandErrors += 1
            let unit = session.units[session.slots[slot].unit].unit
            complete(session, slot: slot, unit.finish(step, result: .failure(.notReady)))
            return
        }
        session.slots[slot].sanDeadline = nowNanos() + sanTimeoutNanos
        san.pump(engine: layer.engine)
    }

    public func fdReady(token: UInt32, events: Int32, layer: RCLAN) {
        guard sanTokens.contains(token) else { return }
        let i = Int(token - sanTokens.lowerBound) / 2
        guard i < sanSessions.count, let entry = sanSessions[i] else { return }
        entry.session.ready(token: token, events: events, engine: layer.engine)
        drainSAN(entry, layer: layer)
    }

    /// Hands the session's finished commands to their slots, and counts a session that went down.
    func drainSAN(_ entry: SANEntry, layer: RCLAN) {
        guard entry.processor < sessions.count else { return }
        let session = sessions[entry.processor]
        entry.session.drain { slot, outcome in sanDone(session, slot: slot, outcome: outcome, layer: layer) }
        if let i = sanSessions.firstIndex(where: { $0?.session === entry.session }),
           let seen = sanSessions[i]?.failuresSeen, entry.session.failures > seen {
            counters.sanFailures += entry.session.failures - seen
            sanSessions[i]?.failuresSeen = entry.session.failures
            sanSessions[i]?.nextAttempt = nowNanos() + Self.reconnectIntervalNanos
        }
        if let i = sanSessions.firstIndex(where: { $0?.session === entry.session }),
           let seen = sanSessions[i]?.reconnectionsSeen, entry.session.reconnections > seen {
            counters.sanReconnections += entry.session.reconnections - seen
            sanSessions[i]?.reconnectionsSeen = entry.session.reconnections
        }
        post(session, layer: layer)
    }

    /// A command on the SAN ended: its result as for a file's completion.
    func sanDone(_ session: TargetSession, slot: Int, outcome: ISCSIOutcome, layer: RCLAN) {
        guard slot < session.slots.count, session.slots[slot].phase == .blockIO, let step = session.slots[slot].step
        else { return }
        if session.slots[slot].abandoned {
            session.slots[slot].phase = .free
            return
        }
        let result: Result<Int, BlockIOError>
        switch outcome {
        case .good(let residual):
            result = .success(max(0, step.length - residual))
        case .checkCondition(let key, let asc, _):
            switch key {
            case 0x02, 0x06: result = .failure(.notReady)  // NOT READY, UNIT ATTENTION: try again
            case 0x07: result = .failure(.readOnly)        // DATA PROTECT
            case 0x05 where asc == 0x21: result = .failure(.outOfRange)
            default: result = .failure(.io(5))             // MEDIUM ERROR, HARDWARE ERROR …: EIO
            }
        case .status:
            result = .failure(.notReady)  // BUSY, TASK SET FULL …: try again
        case .connectionLost:
            result = .failure(.notReady)
        }
        if case .failure = result { counters.sanCommandErrors += 1 }
        finishBlock(session, slot: slot, outcome: result, layer: layer)
    }

    /// Each turn: commands on a SAN past their deadline end (their session goes down), a
    /// session that is down tries to log in again (at most once a second, without blocking),
    /// and a login that got no answer within ``sanTimeout`` is given up.
    func sanTurn(now: UInt64, layer: RCLAN) {
        for i in sanSessions.indices {
            guard let entry = sanSessions[i], entry.processor < sessions.count else { continue }
            let session = sessions[entry.processor]
            var timedOut = false
            for k in session.slots.indices where session.slots[k].phase == .blockIO && session.slots[k].sanDeadline != 0
                && now > session.slots[k].sanDeadline
            {
                guard let u = session.units.indices.contains(session.slots[k].unit) ? session.units[session.slots[k].unit]
                    : nil, u.san === entry.session else { continue }
                entry.session.timeOut(slot: k, after: sanTimeout)
                timedOut = true
            }
            if timedOut {
                counters.sanTimeouts += 1
                drainSAN(entry, layer: layer)
            }
            if let e = sanSessions[i], e.session.isConnecting, now > e.loginDeadline {
                e.session.abandonLogin(after: sanTimeout)
                drainSAN(e, layer: layer)
            }
            if let e = sanSessions[i], !e.session.isUp, !e.session.isConnecting, now >= e.nextAttempt {
                sanSessions[i]?.nextAttempt = now + Self.reconnectIntervalNanos
                sanSessions[i]?.loginDeadline = now + sanTimeoutNanos
                e.session.reconnect(engine: layer.engine)
            }
        }
    }
}
