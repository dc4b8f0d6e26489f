import PlexusCore
import PlexusRCLAN

/// A (target, LUN) of a processor's storage map, offered to the operating system as a disk.
public struct VirtualDisk: Sendable, Hashable {
    /// The NBD export name.
    public var name: String
    public var target: UInt32
    public var lun: UInt32
    /// Its block size and count (READ CAPACITY), and whether it is read-only.
    public var geometry: BlockGeometry

    public init(name: String, target: UInt32, lun: UInt32, geometry: BlockGeometry) {
        self.name = name
        self.target = target
        self.lun = lun
        self.geometry = geometry
    }
}

/// Counters of a ``VirtualDiskExporter``.
public struct VirtualDiskCounters: Sendable, Hashable, Codable {
    /// NBD requests submitted as SCSI commands, and completed (with or without error).
    public var submitted: UInt64 = 0
    public var completed: UInt64 = 0
    /// Requests that ended with an error: a CHECK CONDITION, or a failure on every control node.
    public var failed: UInt64 = 0
    /// Requests failed because the engine stopped under them.
    public var abandoned: UInt64 = 0
    public init() {}
}

/// The processor side's disks ("Processor-side Storage Logic"): each (target, LUN) of the
/// processor's map becomes an NBD export (``export(_:)``) whose requests travel as SCSI
/// commands through a ``StorageInitiator`` (one host adapter per control node, re-issued to the
/// other control node when one fails).
///
/// Each NBD connection gets a ``DiskLane`` of `depth` slots in one ``PlexusCore/SharedSlots``
/// region, which is also the adapters' region (a request larger than a slot takes several, each
/// its own SCSI command, and is answered when the last completes): a write's payload goes from the socket into a
/// slot and is RDMA-written to the control node from there; a read's data is RDMA-written into
/// a slot by the control node and sent to the socket from there. The connection's threads and
/// the engine pass slots through lock-free queues; nothing is copied, locked or allocated per
/// request. At most `lanes` connections are served at once (a further one is refused at the
/// handshake).
///
/// Host it on the processing node's layer (``PlexusRCLAN/RCLAN/host(_:)``), then
/// ``attach(layer:)`` on the engine thread once the adapters' RVIs are open.
public final class VirtualDiskExporter: RVIDelegate, StorageCompletionHandler {
    public let initiator: StorageInitiator
    /// Connections served at once, slots (requests in flight) per connection, bytes per slot
    /// (the largest request).
    public let laneCount: Int
    public let depth: Int
    public let slotSize: Int
    public internal(set) var counters = VirtualDiskCounters()
    let shared: SharedSlots
    var lanes: [DiskLane] = []
    var disks: [VirtualDisk] = []
    var region: RegionKey?
    /// Per lane, the slots submitted to the initiator (bit s): failed if the engine stops.
    var inFlight: [UInt64]
    /// Each disk's statistics, by index in ``disks``.
    var recorders: [DiskRecorder] = []
    /// When each lane slot's command was submitted (lane × depth + slot).
    var submittedAt: [UInt64]
    /// Discovery in progress (``discover(layer:done:)``).
    var discovery: Discovery?

    /// An exporter over `initiator` (it becomes the initiator's handler) with `lanes`
    /// connections of `depth` (≤ 64) slots of `slotSize` bytes (a multiple of 4096, at most the
    /// control nodes' largest transfer); a request may be up to `depth` × `slotSize` bytes.
    public init(initiator: StorageInitiator, lanes: Int = 4, depth: Int = 16, slotSize: Int = 256 * 1024)
        throws(StorageSetupError)
    {
        guard lanes > 0, lanes <= 64, depth > 0, depth <= 64 else {
            throw .badParameter("1…64 lanes of 1…64 requests")
        }
        guard slotSize >= 4096, slotSize % 4096 == 0 else { throw .badParameter("slot size \(slotSize) is not a multiple of 4096") }
        self.initiator = initiator
        laneCount = lanes
        self.depth = depth
        self.slotSize = slotSize
        inFlight = Array(repeating: 0, count: lanes)
        submittedAt = Array(repeating: 0, count: lanes * depth)
        // One more slot than the lanes have: the replies of discovery's commands.
        do { shared = try SharedSlots(count: lanes * depth + 1, slotSize: slotSize) } catch {
            throw .resources("\(lanes * depth) slots of \(slotSize) bytes: \(error)")
        }
        initiator.handler = self
    }

    /// Registers the slots as the adapters' region (their data RVIs' peers may RDMA WRITE into
    /// it) and attaches every adapter to it. On the engine thread, after the adapters' RVIs are
    /// set (``HostAdapter/setRVIs(command:data:)``).
    public func attach(layer: RCLAN) throws(StorageSetupError) {
        let writers = initiator.adapters.compactMap(\.data)
        guard writers.count == initiator.adapters.count else { throw .badParameter("an adapter has no data RVI yet") }
        let key: RegionKey
        do { key = try layer.registerRegion(shared: shared, writers: writers) } catch {
            throw .resources("the disks' region: \(error)")
        }
        for a in initiator.adapters {
            guard let c = a.command, let d = a.data else { throw .badParameter("an adapter has no RVIs yet") }
            try a.attach(command: c, data: d, region: key, layer: layer)
        }
        if lanes.isEmpty {
            do {
                for l in 0..<laneCount {
                    lanes.append(try DiskLane(index: l, depth: depth, shared: shared, waker: layer.engine.waker))
                }
            } catch {
                throw .resources("disk lanes: \(error)")
            }
        }
        region = key
    }

    /// Offers `disk`: the NBD export an ``NBDServer`` serves it under. After ``attach(layer:)``;
    /// on the engine thread. Multi-connection is not offered, so a client (nbdcopy, nbdfuse)
    /// opens one connection with many requests in flight and leaves the other lanes to other
    /// clients.
    /// The export is named `name` (the disk's own name unless given; "" is NBD's default
    /// export, what a client that names none gets).
    public func export(_ disk: VirtualDisk, as name: String? = nil) -> NBDExport {
        let index: Int
        if let i = disks.firstIndex(of: disk) { index = i } else {
            disks.append(disk)
            recorders.append(DiskRecorder())
            index = disks.count - 1
        }
        let source = DiskLaneSource(lanes: lanes, disk: index, blockSize: disk.geometry.blockSize, maxRequest: depth * slotSize)
        return NBDExport(name: name ?? disk.name, description: "target \(disk.target) LUN \(disk.lun)", geometry: disk.geometry,
                         readOnly: disk.geometry.readOnly, multiConnection: false, lanes: source)
    }

    // MARK: - Engine turn

    public func layerTurn(_ layer: RCLAN) {
        guard let region else { return }
        for lane in lanes {
            while let s32 = lane.submitted.peek() {
                let s = Int(s32)
                let r = lane.requests[s]
                if r.kind == .refuse {
                    _ = lane.submitted.pop()
                    lane.complete(s, error: r.error)
                    continue
                }
                let disk = disks[lane.disk.load(ordering: .acquiring)]
                let bs = UInt64(disk.geometry.blockSize)
                let cdb: CDB
                let direction: DataDirection
                var segments = SegmentList()
                switch r.kind {
                case .trim:
                    // The slot holds the UNMAP parameter list the reader wrote: one descriptor.
                    cdb = .unmap(parameterListLength: UInt16(Self.unmapListLength))
                    direction = .dataOut
                    segments.append(Segment(key: region, offset: shared.offset(of: lane.sharedSlot(s)),
                                            length: UInt32(Self.unmapListLength)))
                case .read, .write:
                    let lba = r.offset / bs, blocks = UInt32(UInt64(r.length) / bs)
                    let reading = r.kind == .read
                    cdb = reading ? .read16(lba: lba, blocks: blocks) : .write16(lba: lba, blocks: blocks, fua: r.fua)
                    direction = reading ? .dataIn : .dataOut
                    segments.append(Segment(key: region, offset: shared.offset(of: lane.sharedSlot(s)), length: r.length))
                default:
                    cdb = .synchronizeCache16()
                    direction = .noData
                }
                do throws(StorageSubmitError) {
                    try initiator.submit(cdb: cdb, target: disk.target, lun: disk.lun, direction: direction,
                                         segments: segments, tag: UInt64(lane.index << 16 | s), layer: layer)
                } catch .full {
                    break
                } catch {
                    _ = lane.submitted.pop()
                    counters.failed += 1
                    lane.complete(s, error: NBDProtocol.errInvalid)
                    continue
                }
                _ = lane.submitted.pop()
                inFlight[lane.index] |= 1 << UInt64(s)
                counters.submitted += 1
                let now = nowNanos()
                submittedAt[lane.index * depth + s] = now
                recorders[lane.disk.load(ordering: .relaxed)].started(at: now)
            }
        }
    }

    public func completed(_ completion: StorageCompletion, layer: RCLAN) {
        if completion.tag == Self.discoveryTag {
            discoveryStep(completion, layer: layer)
            return
        }
        let l = Int(completion.tag >> 16), s = Int(completion.tag & 0xFFFF)
        guard l < lanes.count, s < depth, inFlight[l] & (1 << UInt64(s)) != 0 else { return }
        inFlight[l] &= ~(1 << UInt64(s))
        counters.completed += 1
        let r = lanes[l].requests[s]
        let error = Self.nbdError(completion, expected: r.kind == .read ? 0 : nil)
        if error != 0 { counters.failed += 1 }
        recorders[lanes[l].disk.load(ordering: .relaxed)].finished(r.kind.operation, length: UInt64(r.length), failed: error != 0,
                                                                   startedAt: submittedAt[l * depth + s], now: nowNanos())
        lanes[l].complete(s, error: error)
    }

    public func layerWillStop(_ layer: RCLAN) {
        for lane in lanes {
            for s in 0..<depth where inFlight[lane.index] & (1 << UInt64(s)) != 0 {
                counters.abandoned += 1
                lane.complete(s, error: NBDProtocol.errIO)
            }
            inFlight[lane.index] = 0
            while let s = lane.submitted.pop() {
                counters.abandoned += 1
                lane.complete(Int(s), error: NBDProtocol.errIO)
            }
            lane.kill()
        }
    }

    /// Bytes of an UNMAP parameter list with one block descriptor.
    static let unmapListLength = 24
    /// The most one UNMAP releases (its descriptor's block count is 32 bits; a control node
    /// takes up to 4 Mi blocks).
    public static let maxTrimBytes = 1 << 30

    /// The NBD error of a completion: none for GOOD (a read that moved less than asked is an
    /// I/O error); EPERM for DATA PROTECT, EINVAL for ILLEGAL REQUEST, EIO for
    /// anything else and a failure on every control node.
    static func nbdError(_ c: StorageCompletion, expected residual: UInt32?) -> UInt32 {
        switch c.outcome {
        case .transportFailure:
            return NBDProtocol.errIO
        case .status(let status, let r, _, _):
            if status == SCSIStatus.good.rawValue {
                if let residual, r != residual { return NBDProtocol.errIO }
                return 0
            }
            switch c.senseCode?.key {
            case .dataProtect: return NBDProtocol.errPerm
            case .illegalRequest: return NBDProtocol.errInvalid
            default: return NBDProtocol.errIO
            }
        }
    }
}

/// How an NBD connection to one disk claims a lane of the exporter. Sendable: the lanes are
/// made at attach and never change.
public final class DiskLaneSource: Sendable {
    let lanes: [DiskLane]
    let disk: Int
    let blockSize: Int
    /// The largest request a connection takes: all the slots of its lane.
    public let maxRequest: Int

    init(lanes: [DiskLane], disk: Int, blockSize: Int, maxRequest: Int) {
        self.lanes = lanes
        self.disk = disk
        self.blockSize = blockSize
        self.maxRequest = maxRequest
    }

    /// A free lane for a new connection, claimed; nil when every lane is in use.
    func claim() -> DiskLane? { lanes.first { $0.claim(disk: disk, blockSize: blockSize) } }
}
