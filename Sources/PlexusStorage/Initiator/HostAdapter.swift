import PlexusCore
import PlexusRCLAN

/// One command in flight at a host adapter.
struct AdapterSlot {
    var inUse = false
    /// The CMD has been posted.
    var sent = false
    var command = StorageCommand(sequence: 0, target: 0, lun: 0, direction: .noData, cdb: CDB())
    var tag: UInt64 = 0
    /// ``PlexusCore/nowNanos()`` after which it fails with ``TransportFailure/timeout``.
    var deadline: UInt64 = 0
    /// BUFs received and not yet answered (bit i: segment i).
    var buffersOwed: UInt32 = 0
    /// Bytes of the lowest owed BUF already RDMA-written.
    var progress = 0
}

/// The processor-side storage logic of seed 004 ("Processor-side Storage Logic"): a SCSI host
/// adapter for one control node, an ``PlexusRCLAN/RVIDelegate`` service on the processing node.
///
/// ``submit(cdb:target:lun:direction:segments:tag:layer:)`` sends a CMD on the command RVI
/// naming the caller's memory in the adapter's registered region; the control node RDMA-WRITEs
/// a read's data into it, or answers a write with BUFs, which the adapter serves by
/// RDMA-WRITEing each segment from the region and sending a TRAN behind it on the data RVI. The
/// STAT completes the command through ``handler``. A command that gets no STAT within
/// ``timeout``, or whose RVIs fail or reset, completes with a ``TransportFailure``.
///
/// At most `maxCommands` are in flight; sequence numbers are new for every CMD. Everything runs
/// on the engine thread and nothing allocates per command.
public final class HostAdapter: RVIDelegate {
    public let maxCommands: Int
    /// How long a command may wait for its STAT.
    public let timeout: Duration
    /// Gets the completions (held weakly).
    public weak var handler: (any StorageCompletionHandler)?
    public internal(set) var counters = HostAdapterCounters()
    /// The command RVI (CMD out, STAT in), once set.
    public private(set) var command: RVI?
    /// The data RVI (BUF in, TRAN and RDMA WRITEs out, RDMA WRITEs of read data in), once set.
    public private(set) var data: RVI?
    var memory: StagingMemory?
    var slots: [AdapterSlot]
    /// The BUF regions of every slot: 32 per slot, preallocated.
    var buffers: [Segment]
    var nextSequence: UInt64 = 1
    let timeoutNanos: UInt64
    let scratch: UnsafeMutableRawBufferPointer

    public init(maxCommands: Int = 32, timeout: Duration = .seconds(5)) {
        precondition(maxCommands > 0, "a host adapter needs room for a command")
        self.maxCommands = maxCommands
        self.timeout = timeout
        let c = timeout.components
        timeoutNanos = UInt64(c.seconds) * 1_000_000_000 + UInt64(c.attoseconds / 1_000_000_000)
        slots = Array(repeating: AdapterSlot(), count: maxCommands)
        buffers = Array(repeating: Segment(key: RegionKey(rawValue: 0), offset: 0, length: 0),
                        count: maxCommands * SegmentList.capacity)
        scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: StorageLimits.maxMessageSize, alignment: 8)
    }

    deinit { scratch.deallocate() }

    /// Uses `command` (CMD/STAT) and `data` (BUF/TRAN/RDMA), two RVIs this adapter owns, and
    /// `region`, a region of this engine that `data`'s peer may RDMA WRITE into: every
    /// command's segments lie in it. Setup, on the engine thread.
    public func attach(command: RVI, data: RVI, region: RegionKey, layer: RCLAN) throws(StorageSetupError) {
        for r in [command, data] where layer.service(of: r) !== self { throw .rviUnavailable(r) }
        do {
            memory = try StagingMemory(key: region, layer: layer, slotSize: 1)
        } catch {
            throw .resources("region \(region): \(error)")
        }
        self.command = command
        self.data = data
    }

    /// Names the adapter's RVIs before its region exists (the region's writers are the data
    /// RVIs, so they are opened first); ``attach(command:data:region:layer:)`` completes it.
    public func setRVIs(command: RVI, data: RVI) {
        self.command = command
        self.data = data
    }

    /// Commands in flight.
    public var inFlight: Int { slots.reduce(0) { $0 + ($1.inUse ? 1 : 0) } }

    /// Sends a SCSI command to (target, LUN): `segments` (in the adapter's region, in transfer
    /// order) receive a read's data or hold a write's. `tag` comes back in the completion.
    /// - Returns: the command's sequence number.
    @discardableResult
    public func submit(cdb: CDB, target: UInt32, lun: UInt32, direction: DataDirection,
                       segments: SegmentList = SegmentList(), tag: UInt64, layer: RCLAN) throws(StorageSubmitError) -> UInt64 {
        try submit(StorageCommand(sequence: 0, target: target, lun: lun, direction: direction, cdb: cdb,
                                  segments: segments), tag: tag, layer: layer)
    }

    /// Sends a protocol-control operation (``ControlOperation``); listLUNs takes `segments` for
    /// its reply.
    @discardableResult
    public func submitControl(_ operation: ControlOperation, target: UInt32 = 0, lun: UInt32 = 0, argument: UInt64 = 0,
                              segments: SegmentList = SegmentList(), tag: UInt64, layer: RCLAN)
        throws(StorageSubmitError) -> UInt64
    {
        try submit(StorageCommand(sequence: 0, target: target, lun: lun, control: operation, argument: argument,
                                  segments: segments), tag: tag, layer: layer)
    }

    /// Sends `command` with a new sequence number.
    @discardableResult
    public func submit(_ command: StorageCommand, tag: UInt64, layer: RCLAN) throws(StorageSubmitError) -> UInt64 {
        guard let memory, self.command != nil else { throw .detached }
        for (i, s) in command.segments.enumerated() {
            guard s.key == memory.key, memory.bytes(at: Int(clamping: s.offset), length: Int(s.length)) != nil else {
                throw .segmentOutsideRegion(index: i)
            }
        }
        do throws(StorageMessageError) { try command.validate() } catch { throw .invalid(error) }
        guard let i = slots.firstIndex(where: { !$0.inUse }) else { throw .full }
        var c = command
        c.sequence = nextSequence
        nextSequence += 1
        slots[i] = AdapterSlot(inUse: true, sent: false, command: c, tag: tag, deadline: nowNanos() + timeoutNanos)
        counters.submitted += 1
        postCommand(i, layer: layer)
        return c.sequence
    }

    func slot(sequence: UInt64) -> Int? {
        for i in slots.indices where slots[i].inUse && slots[i].command.sequence == sequence { return i }
        return nil
    }

    /// Frees slot `i` and reports `outcome`.
    func finish(_ i: Int, _ outcome: StorageOutcome, layer: RCLAN) {
        let done = StorageCompletion(tag: slots[i].tag, sequence: slots[i].command.sequence, outcome: outcome)
        slots[i].inUse = false
        counters.completed += 1
        if case .transportFailure(let f) = outcome {
            switch f {
            case .timeout: counters.timeouts += 1
            case .rviFailed: counters.rviFailures += 1
            case .reset, .detached: counters.resets += 1
            }
        }
        handler?.completed(done, layer: layer)
    }

    /// Fails every command in flight with `failure` (its control node is unreachable).
    func failAll(_ failure: TransportFailure, layer: RCLAN) {
        for i in slots.indices where slots[i].inUse { finish(i, .transportFailure(failure), layer: layer) }
    }

    // MARK: - RVIDelegate

    public func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        let decoded: StorageMessage
        do throws(StorageMessageError) {
            decoded = try StorageMessage(decoding: message)
        } catch {
            counters.malformed += 1
            return
        }
        switch decoded {
        case .status(let s) where rvi == command:
            guard let i = slot(sequence: s.sequence) else {
                counters.stale += 1
                return
            }
            finish(i, .status(scsiStatus: s.scsiStatus, residual: s.residual, sense: s.sense, control: s.controlResult),
                   layer: layer)
        case .buffer(let b) where rvi == data:
            guard let i = slot(sequence: b.sequence) else {
                counters.stale += 1
                return
            }
            let c = slots[i].command
            let k = Int(b.index)
            guard c.direction == .dataOut, k < c.segments.count, b.region.length == c.segments[k].length,
                  slots[i].buffersOwed & (1 << UInt32(k)) == 0
            else {
                counters.malformed += 1
                return
            }
            buffers[i * SegmentList.capacity + k] = b.region
            slots[i].buffersOwed |= 1 << UInt32(k)
            answerBuffers(i, layer: layer)
        default:
            counters.malformed += 1
        }
    }

    public func layerTurn(_ layer: RCLAN) {
        let now = nowNanos()
        for i in slots.indices where slots[i].inUse {
            if now > slots[i].deadline {
                finish(i, .transportFailure(.timeout), layer: layer)
                continue
            }
            if !slots[i].sent { postCommand(i, layer: layer) }
            if slots[i].buffersOwed != 0 { answerBuffers(i, layer: layer) }
        }
    }

    public func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN) {
        guard rvi == command || rvi == data else { return }
        failAll(.rviFailed(reason), layer: layer)
    }

    public func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {
        guard rvi == command || rvi == data else { return }
        switch event {
        case .reset, .peerRestarted: failAll(.reset, layer: layer)
        default: break
        }
    }
}
