import PlexusCore
import PlexusRCLAN

/// Why discovery found no disks.
public enum DiskDiscoveryError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A discovery is already running.
    case busy
    /// The exporter is not attached to its adapters' region.
    case detached
    /// A command failed: which, and how.
    case failed(String)

    public var description: String {
        switch self {
        case .busy: "a discovery is already running"
        case .detached: "the exporter is not attached"
        case .failed(let s): s
        }
    }
}

/// The steps of one discovery.
struct Discovery {
    var done: (Result<[VirtualDisk], DiskDiscoveryError>) -> Void
    /// The (target, LUN)s listed so far, and the disks made of those already sized.
    var listed: [(target: UInt32, lun: UInt32)] = []
    var disks: [VirtualDisk] = []
    /// The adapter asked now, while listing (the lists of every control node are merged), and
    /// while sizing (the first control node that answers GOOD sizes the disk).
    var adapter = 0
    var listing = true
    /// Control nodes that answered the listing.
    var answered = 0
    /// What the last failure was, for the error when no control node answers.
    var lastFailure = ""
}

// Discovery from the processor's side: which (target, LUN)s its map gives it (the protocol-
// control listLUNs operation, answered by the control node from the map) and each one's size
// (READ CAPACITY(16)). Setup, not the data path: it allocates.
extension VirtualDiskExporter {
    /// Beyond any initiator slot: the initiator passes its completions up unchanged.
    static let discoveryTag: UInt64 = 1 << 62
    static let capacityLength: UInt32 = 32

    /// Whether a discovery is running.
    public var isDiscovering: Bool { discovery != nil }

    /// The shared slot discovery's replies land in.
    var discoverySlot: Int { laneCount * depth }

    /// Lists the disks of this processor's map and sizes each; `done` gets them (named
    /// `t<target>-l<lun>`) on the engine thread, or why not. After ``attach(layer:)``.
    ///
    /// Every control node is asked for its list (listLUNs) and the lists are merged: just
    /// after a failover one control node may already serve the personality's map to this
    /// processor while the other does not yet. A disk is sized (READ CAPACITY(16)) by the first
    /// control node that answers GOOD. A control node that does not answer is skipped; when
    /// none does, discovery fails naming the last failure.
    public func discover(layer: RCLAN, done: @escaping (Result<[VirtualDisk], DiskDiscoveryError>) -> Void) {
        guard discovery == nil else { return done(.failure(.busy)) }
        guard region != nil else { return done(.failure(.detached)) }
        discovery = Discovery(done: done)
        sendDiscoveryCommand(layer: layer)
    }

    /// Sends the current step's command to the current adapter; moves on when it is refused.
    func sendDiscoveryCommand(layer: RCLAN) {
        guard let region, var d = discovery else { return }
        let adapters = initiator.adapters
        while d.adapter < adapters.count {
            var segments = SegmentList()
            let length = d.listing ? UInt32(slotSize) : Self.capacityLength
            segments.append(Segment(key: region, offset: shared.offset(of: discoverySlot), length: length))
            do throws(StorageSubmitError) {
                if d.listing {
                    try adapters[d.adapter].submitControl(.listLUNs, segments: segments, tag: Self.discoveryTag, layer: layer)
                } else {
                    let (t, l) = d.listed[d.disks.count]
                    try adapters[d.adapter].submit(cdb: .readCapacity16(allocationLength: Self.capacityLength), target: t,
                                                   lun: l, direction: .dataIn, segments: segments, tag: Self.discoveryTag,
                                                   layer: layer)
                }
                discovery = d
                return
            } catch {
                d.lastFailure = "control node \(d.adapter + 1): \(error)"
                d.adapter += 1
            }
        }
        discovery = d
        advanceDiscovery(layer: layer)
    }

    /// The current step has asked every adapter: on to the next step, or the end.
    func advanceDiscovery(layer: RCLAN) {
        guard var d = discovery else { return }
        if d.listing {
            guard d.answered > 0 else {
                discovery = d
                return finishDiscovery(.failure(.failed("no control node listed the LUNs: \(d.lastFailure)")))
            }
            d.listing = false
        } else if d.disks.count < d.listed.count {
            let (t, l) = d.listed[d.disks.count]
            discovery = d
            return finishDiscovery(.failure(.failed("no control node sized target \(t) LUN \(l): \(d.lastFailure)")))
        }
        d.adapter = 0
        discovery = d
        if d.disks.count == d.listed.count { return finishDiscovery(.success(d.disks)) }
        sendDiscoveryCommand(layer: layer)
    }

    func discoveryStep(_ c: StorageCompletion, layer: RCLAN) {
        guard var d = discovery else { return }
        guard c.isGood, case .status(_, let residual, _, _) = c.outcome else {
            d.lastFailure = "control node \(d.adapter + 1): \(c.outcome)"
            d.adapter += 1
            discovery = d
            return sendDiscoveryCommand(layer: layer)
        }
        if d.listing {
            let n = (slotSize - Int(residual)) / StorageLimits.lunEntrySize
            shared.withSlot(discoverySlot) { raw in
                for i in 0..<n {
                    let t = UInt32(littleEndian: raw.load(fromByteOffset: i * StorageLimits.lunEntrySize, as: UInt32.self))
                    let l = UInt32(littleEndian: raw.load(fromByteOffset: i * StorageLimits.lunEntrySize + 4, as: UInt32.self))
                    if !d.listed.contains(where: { $0 == (t, l) }) { d.listed.append((t, l)) }
                }
            }
            d.answered += 1
            d.adapter += 1
            discovery = d
            return sendDiscoveryCommand(layer: layer)
        }
        let (t, l) = d.listed[d.disks.count]
        let geometry = shared.withSlot(discoverySlot) { raw -> BlockGeometry in
            var last: UInt64 = 0, size: UInt32 = 0
            for i in 0..<8 { last = last << 8 | UInt64(raw[i]) }
            for i in 8..<12 { size = size << 8 | UInt32(raw[i]) }
            // LBPME: the unit releases ranges (UNMAP); LBPRZ: they then read zeroes.
            return BlockGeometry(blockSize: Int(size), blockCount: last + 1, canUnmap: raw[14] & 0x80 != 0,
                                 unmapReadsZeroes: raw[14] & 0x40 != 0, alignment: Int(size))
        }
        d.disks.append(VirtualDisk(name: "t\(t)-l\(l)", target: t, lun: l, geometry: geometry))
        d.adapter = 0
        discovery = d
        if d.disks.count == d.listed.count { return finishDiscovery(.success(d.disks)) }
        sendDiscoveryCommand(layer: layer)
    }

    func finishDiscovery(_ result: Result<[VirtualDisk], DiskDiscoveryError>) {
        guard let d = discovery else { return }
        discovery = nil
        d.done(result)
    }
}
