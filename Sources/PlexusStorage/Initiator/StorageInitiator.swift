import PlexusCore
import PlexusRCLAN

/// One command of a ``StorageInitiator``: what it needs to send it again.
struct InitiatorSlot {
    var inUse = false
    var command = StorageCommand(sequence: 0, target: 0, lun: 0, direction: .noData, cdb: CDB())
    var tag: UInt64 = 0
    /// The adapter it is on, or waits for (-1: none yet).
    var adapter = -1
    /// Adapters tried so far.
    var attempts = 0
    /// Waiting to be (re)submitted: the adapter was full.
    var pending = false
}

/// The retry logic of seed 004's processor side ("Under certain embodiments using redundant
/// control nodes, the processor-side logic … re-issues the command to the other control
/// node"): a small initiator over one ``HostAdapter`` per control node.
///
/// Commands go to the ``preferred`` adapter. A command that ends with a ``TransportFailure``
/// (its RVI failed, the control node's RVIs reset, no STAT within the adapter's timeout) is
/// re-issued, with the same CDB, target, LUN and segments, to the next adapter, and counted in
/// ``reissued``; the preferred adapter moves there. Only when every adapter has failed it does
/// the failure reach ``handler``. SCSI errors (CHECK CONDITION) are the device's answer and are
/// not re-issued, except LOGICAL UNIT NOT SUPPORTED: that control node does not serve the LUN to
/// this processor (around a failover the two maps may differ for a moment), so the command goes
/// to the other, counted in ``redirected``, without moving ``preferred``.
///
/// Re-issuing a write after a control node died is safe because writes are idempotent at the
/// block level: the re-issued command carries the same data to the same LBAs, and a command is
/// not complete to the caller until a STAT arrives, so the caller issues nothing that depends
/// on it (no overlapping write) before then: the last write to complete for an LBA range is
/// the one the caller issued last, whether or not the dead node's copy reached the backend. A
/// node that is alive but timed out is not fenced (docs/storage.md, "Re-issue to the other
/// control node").
///
/// Host it on the processing node's layer (``PlexusRCLAN/RCLAN/host(_:)``) for its turn; it
/// owns no RVIs. Everything runs on the engine thread; nothing allocates per command.
public final class StorageInitiator: RVIDelegate, StorageCompletionHandler {
    public let adapters: [HostAdapter]
    public let maxCommands: Int
    /// Gets the completions (held weakly).
    public weak var handler: (any StorageCompletionHandler)?
    /// The adapter new commands go to.
    public private(set) var preferred = 0
    /// Commands re-issued to another control node after a transport failure.
    public private(set) var reissued: UInt64 = 0
    /// Commands that failed on every adapter.
    public private(set) var failed: UInt64 = 0
    /// Commands sent to another control node because the first answered LOGICAL UNIT NOT
    /// SUPPORTED (it does not serve the LUN to this processor, the other may).
    public private(set) var redirected: UInt64 = 0
    var slots: [InitiatorSlot]

    /// An initiator over `adapters` (one per control node); it becomes their handler.
    public init(adapters: [HostAdapter], maxCommands: Int = 32) {
        precondition(!adapters.isEmpty && maxCommands > 0, "an initiator needs an adapter and room for a command")
        self.adapters = adapters
        self.maxCommands = maxCommands
        slots = Array(repeating: InitiatorSlot(), count: maxCommands)
        for a in adapters { a.handler = self }
    }

    /// Commands in flight.
    public var inFlight: Int { slots.reduce(0) { $0 + ($1.inUse ? 1 : 0) } }

    /// Sends a SCSI command (see ``HostAdapter/submit(cdb:target:lun:direction:segments:tag:layer:)``);
    /// the segments must lie in a region every adapter uses.
    public func submit(cdb: CDB, target: UInt32, lun: UInt32, direction: DataDirection,
                       segments: SegmentList = SegmentList(), tag: UInt64, layer: RCLAN) throws(StorageSubmitError) {
        try submit(StorageCommand(sequence: 0, target: target, lun: lun, direction: direction, cdb: cdb, segments: segments),
                   tag: tag, layer: layer)
    }

    /// Sends a protocol-control operation (``ControlOperation``) the same way; listLUNs takes
    /// `segments` for its reply.
    public func submitControl(_ operation: ControlOperation, target: UInt32 = 0, lun: UInt32 = 0, argument: UInt64 = 0,
                              segments: SegmentList = SegmentList(), tag: UInt64, layer: RCLAN) throws(StorageSubmitError) {
        try submit(StorageCommand(sequence: 0, target: target, lun: lun, control: operation, argument: argument,
                                  segments: segments), tag: tag, layer: layer)
    }

    /// Sends `c` (its sequence number is the adapter's to give).
    func submit(_ c: StorageCommand, tag: UInt64, layer: RCLAN) throws(StorageSubmitError) {
        do throws(StorageMessageError) { try c.validate() } catch { throw .invalid(error) }
        guard let i = slots.firstIndex(where: { !$0.inUse }) else { throw .full }
        slots[i] = InitiatorSlot(inUse: true, command: c, tag: tag, adapter: preferred, attempts: 1, pending: true)
        issue(i, layer: layer)
    }

    /// Submits slot `i` to its adapter; stays pending when the adapter is full.
    func issue(_ i: Int, layer: RCLAN) {
        let a = adapters[slots[i].adapter]
        do throws(StorageSubmitError) {
            try a.submit(slots[i].command, tag: UInt64(i), layer: layer)
            slots[i].pending = false
        } catch .full {
            slots[i].pending = true
        } catch {
            // Detached or refused: that adapter cannot carry it; try the next one.
            slots[i].pending = false
            completed(StorageCompletion(tag: UInt64(i), sequence: 0, outcome: .transportFailure(.detached)), from: a,
                      layer: layer)
        }
    }

    /// An adapter's completion (the initiator is every adapter's handler): passed up, or
    /// re-issued to the next adapter after a transport failure.
    public func completed(_ completion: StorageCompletion, layer: RCLAN) {
        // A command submitted to an adapter directly (a tag beyond the initiator's slots) is
        // passed up as it is: the caller chose its adapter and handles its failure.
        guard completion.tag < UInt64(slots.count) else {
            handler?.completed(completion, layer: layer)
            return
        }
        // Which adapter: the slot records it.
        let i = Int(completion.tag)
        guard i < slots.count, slots[i].inUse else { return }
        completed(completion, from: adapters[slots[i].adapter], layer: layer)
    }

    func completed(_ completion: StorageCompletion, from adapter: HostAdapter, layer: RCLAN) {
        let i = Int(completion.tag)
        guard i < slots.count, slots[i].inUse else { return }
        if Self.unitNotServed(completion), slots[i].attempts < adapters.count {
            // This control node does not serve the LUN to this processor (yet): around a
            // failover the two control nodes' maps may differ for a moment. The other may.
            slots[i].adapter = (slots[i].adapter + 1) % adapters.count
            slots[i].attempts += 1
            redirected += 1
            issue(i, layer: layer)
            return
        }
        if case .transportFailure = completion.outcome, slots[i].attempts < adapters.count {
            let next = (slots[i].adapter + 1) % adapters.count
            if slots[i].adapter == preferred { preferred = next }
            slots[i].adapter = next
            slots[i].attempts += 1
            reissued += 1
            issue(i, layer: layer)
            return
        }
        if case .transportFailure = completion.outcome { failed += 1 }
        let tag = slots[i].tag
        slots[i].inUse = false
        var out = completion
        out.tag = tag
        handler?.completed(out, layer: layer)
    }

    public func layerTurn(_ layer: RCLAN) {
        for i in slots.indices where slots[i].inUse && slots[i].pending { issue(i, layer: layer) }
    }

    /// CHECK CONDITION, ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (ASC 0x25).
    static func unitNotServed(_ c: StorageCompletion) -> Bool {
        guard let code = c.senseCode else { return false }
        return code.key == .illegalRequest && code.asc == 0x25
    }
}
