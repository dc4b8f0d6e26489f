import PlexusCore
import PlexusRCLAN

/// The control node-side storage logic of seed 004 ("Control node-side Storage Logic"): an
/// ``PlexusRCLAN/RVIDelegate`` service that answers the processors' storage commands from the
/// logical units their storage maps name.
///
/// Each processor has two RVIs to it: the *command* RVI carries CMD in and STAT out, the
/// *data* RVI carries BUF out, TRAN in and the RDMA WRITEs of the data both ways. A read is
/// executed into the processor's staging slot, RDMA-written into the CMD's segments over the
/// data RVI, and its STAT is sent on the command RVI once the data RVI's acknowledgement covers
/// the last write (the two RVIs are not ordered with each other). A write is answered with one
/// BUF per segment naming the slot's memory; the processor RDMA-WRITEs each segment and sends a
/// TRAN behind it on the same RVI; when every TRAN is in, the slot is written to the backend
/// and the STAT sent.
///
/// Access control is at I/O time: a command for a (target, LUN) outside the processor's map is
/// answered with CHECK CONDITION ILLEGAL REQUEST (LOGICAL UNIT NOT SUPPORTED), counted, and
/// never reaches a backend; a write to a read-only mapping gets DATA PROTECT.
///
/// Backends are files or block devices on the engine's ring (``PlexusCore/Engine/read(_:at:length:into:regionOffset:token:)``),
/// or LUNs on an iSCSI SAN (a mapping whose path is an `iscsi://` URL: ``ISCSISession``, its
/// socket watched on the same ring); the engine thread never blocks after setup. Each processor has a preallocated staging region of
/// `slots` × `slotSize` bytes (one slot per command in flight, the largest transfer a command
/// may move) and a bounded queue for CMDs that find no free slot; nothing allocates per command.
///
/// Every method runs on the engine thread (host the target with ``PlexusRCLAN/RCLAN/host(_:)``,
/// and call ``addProcessor(command:data:map:layer:)`` from the engine thread).
public final class StorageTarget: RVIDelegate {
    /// Staging slots (commands in flight) per processor.
    public let slotsPerProcessor: Int
    /// Bytes of one slot: the largest transfer one command may move.
    public let slotSize: Int
    /// CMDs that may wait for a slot, per processor.
    public let queueDepth: Int
    /// The most processors (each claims `slotsPerProcessor` block I/O tokens at setup).
    public let maxProcessors: Int
    /// How long a write may wait for its TRANs after its BUFs are out; then it is dropped
    /// without a STAT (the processor has given up on it: its own timeout is shorter).
    public let transferTimeout: Duration
    let transferTimeoutNanos: UInt64
    /// What the target has done and refused, over all processors.
    public internal(set) var counters = StorageTargetCounters()
    /// Refusals of undecodable messages, by kind.
    public internal(set) var malformedByKind = [Int](repeating: 0, count: StorageMessageError.Kind.allCases.count)

    /// How long a command on an iSCSI LUN may take before it ends with NOT READY and its
    /// session is taken down (StorageTarget+SAN.swift).
    public let sanTimeout: Duration
    let sanTimeoutNanos: UInt64

    var sessions: [TargetSession] = []
    var tokens: Range<UInt32> = 0..<0
    /// The watch tokens of iSCSI sessions (two each) and the sessions, by token pair.
    var sanTokens: Range<UInt32> = 0..<0
    var sanSessions: [SANEntry?] = []
    /// Scratch for encoding one message (the largest of any type), allocated once.
    let scratch: UnsafeMutableRawBufferPointer
    /// Data-in answers of the commands a unit answers itself (INQUIRY …), before they are
    /// copied into the slot.
    let answers: IOBufferPool

    /// A target whose processors each get `slots` staging slots of `slotSize` bytes (a
    /// multiple of 4096) and a queue of `queueDepth` CMDs.
    public init(slots: Int = 16, slotSize: Int = 1 << 20, queueDepth: Int = 64, maxProcessors: Int = 64,
                transferTimeout: Duration = .seconds(10), sanTimeout: Duration = .seconds(5)) throws(StorageSetupError)
    {
        self.transferTimeout = transferTimeout
        let t = transferTimeout.components
        transferTimeoutNanos = UInt64(max(0, t.seconds)) * 1_000_000_000 + UInt64(max(0, t.attoseconds) / 1_000_000_000)
        self.sanTimeout = sanTimeout
        let st = sanTimeout.components
        sanTimeoutNanos = UInt64(max(0, st.seconds)) * 1_000_000_000 + UInt64(max(0, st.attoseconds) / 1_000_000_000)
        guard slots > 0, slots <= 1024, queueDepth > 0, maxProcessors > 0 else {
            throw .badParameter("slots 1…1024, a positive queue depth and processor count")
        }
        guard slotSize >= 4096, slotSize % 4096 == 0 else { throw .badParameter("slot size \(slotSize) is not a multiple of 4096") }
        slotsPerProcessor = slots
        self.slotSize = slotSize
        self.queueDepth = queueDepth
        self.maxProcessors = maxProcessors
        scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: StorageLimits.maxMessageSize, alignment: 8)
        do { answers = try IOBufferPool(slots: 1, slotSize: 4096) } catch { throw .resources("answer buffer: \(error)") }
    }

    deinit { scratch.deallocate() }

    /// Serves a processor reached by `command` (CMD/STAT) and `data` (BUF/TRAN/RDMA), two RVIs
    /// this target owns (opened with ``PlexusRCLAN/RCLAN/open(_:policy:service:)`` naming it),
    /// with `map`. Opens each backing file on the engine's ring and registers the processor's
    /// staging region, writable by `data`'s peer. Setup: allocates, may block briefly.
    /// - Returns: the processor's index at this target.
    @discardableResult
    public func addProcessor(command: RVI, data: RVI, map: [StorageMapping], layer: RCLAN) throws(StorageSetupError) -> Int {
        guard sessions.count < maxProcessors else { throw .resources("\(maxProcessors) processors already served") }
        for r in [command, data] {
            guard layer.service(of: r) === self, !sessions.contains(where: { $0.command == r || $0.data == r }) else {
                throw .rviUnavailable(r)
            }
        }
        if tokens.isEmpty {
            do {
                tokens = try layer.claimBlockIOTokens(UInt32(slotsPerProcessor * maxProcessors), for: self)
            } catch {
                throw .resources("block I/O tokens: \(error)")
            }
        }
        let units = try makeUnits(map, processor: sessions.count, layer: layer)
        let staging: StagingMemory
        do {
            staging = try StagingMemory(layer: layer, slots: slotsPerProcessor, slotSize: slotSize, writers: [data])
        } catch {
            close(units, layer: layer)
            throw .resources("staging region: \(error)")
        }
        let index = sessions.count
        sessions.append(TargetSession(index: index, command: command, data: data, units: units, staging: staging,
                                      slots: slotsPerProcessor, queueDepth: queueDepth,
                                      firstToken: tokens.lowerBound + UInt32(index * slotsPerProcessor)))
        return index
    }

    /// The (target, LUN) pairs processor `index` may use, in map order.
    public func map(ofProcessor index: Int) -> [(target: UInt32, lun: UInt32)] {
        guard index < sessions.count else { return [] }
        return sessions[index].units.map { ($0.target, $0.lun) }
    }

    /// Commands in flight (holding a slot) and waiting, over all processors.
    public var inFlight: (active: Int, waiting: Int) {
        var a = 0, w = 0
        for s in sessions {
            for slot in s.slots where slot.phase != .free { a += 1 }
            w += s.waitingCount
        }
        return (a, w)
    }

    func session(of rvi: RVI) -> (TargetSession, isCommand: Bool)? {
        for s in sessions {
            if s.command == rvi { return (s, true) }
            if s.data == rvi { return (s, false) }
        }
        return nil
    }

    // MARK: - RVIDelegate

    public func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        guard let (session, isCommand) = session(of: rvi) else {
            counters.malformed += 1
            return
        }
        let decoded: StorageMessage
        do throws(StorageMessageError) {
            decoded = try StorageMessage(decoding: message)
        } catch {
            refuse(message, error: error, session: session, layer: layer)
            return
        }
        switch decoded {
        case .command(let c) where isCommand:
            accept(c, session: session, layer: layer)
        case .transfer(let t) where !isCommand:
            transferArrived(t, session: session, layer: layer)
        default:
            counters.malformed += 1
        }
    }

    public func acknowledged(on rvi: RVI, through: UInt64, layer: RCLAN) {
        guard let (session, isCommand) = session(of: rvi), !isCommand else { return }
        session.dataAcknowledged = through
        for i in session.slots.indices where session.slots[i].phase == .awaitingAcknowledgement {
            if session.slots[i].lastDataMessage <= through { session.slots[i].phase = .sendingStatus }
        }
        post(session, layer: layer)
    }

    public func layerTurn(_ layer: RCLAN) {
        let now = sessions.isEmpty ? 0 : nowNanos()
        if !sanSessions.isEmpty { sanTurn(now: now, layer: layer) }
        for s in sessions {
            for i in s.slots.indices where s.slots[i].phase == .awaitingTransfers && now > s.slots[i].transferDeadline {
                endRecording(s, slot: i, failed: true)
                s.slots[i].phase = .free
                counters.abandoned += 1
            }
            post(s, layer: layer)
        }
    }

    public func writable(_ rvi: RVI, layer: RCLAN) {
        if let (s, _) = session(of: rvi) { post(s, layer: layer) }
    }

    public func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN) {
        if let (s, _) = session(of: rvi) { abandon(s) }
    }

    public func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {
        switch event {
        case .reset, .peerRestarted:
            if let (s, _) = session(of: rvi) { abandon(s) }
        default:
            break
        }
    }

    public func blockIOCompleted(token: UInt32, result: Int32, layer: RCLAN) {
        guard tokens.contains(token) else { return }
        let k = Int(token - tokens.lowerBound)
        let si = k / slotsPerProcessor, slot = k % slotsPerProcessor
        guard si < sessions.count else { return }
        blockDone(sessions[si], slot: slot, result: result, layer: layer)
    }
}
