import PlexusCore

// The storage protocol's messages (seed 004, "Processor-side Storage Logic" and "Control
// node-side Storage Logic"): CMD and STAT travel on one RVI of a (processor, control node) pair,
// BUF and TRAN (and the RDMA WRITEs of the data) on the other. Every message starts with the
// same header; docs/wire-format.md ("Storage messages") draws each one byte by byte.

/// The four message types.
public enum StorageMessageType: UInt8, Sendable, Hashable, CaseIterable {
    /// CMD: processor → control node. A SCSI command (or a protocol-control operation) and the
    /// processor's memory for its data.
    case command = 1
    /// STAT: control node → processor. The completion of a CMD: SCSI status, residual, sense.
    case status = 2
    /// BUF: control node → processor. Where the processor RDMA-WRITEs one segment of a write.
    case buffer = 3
    /// TRAN: processor → control node. One segment has been written into a BUF's buffer.
    case transfer = 4
}

/// Which way a command's data moves, seen from the processor (SCSI's data-in and data-out).
public enum DataDirection: UInt8, Sendable, Hashable, CaseIterable {
    /// No data phase (TEST UNIT READY, SYNCHRONIZE CACHE, abort, reset).
    case noData = 0
    /// Device to processor: a read. The control node RDMA-WRITEs into the CMD's segments.
    case dataIn = 1
    /// Processor to device: a write. The control node answers with BUF messages.
    case dataOut = 2
}

/// The operations of seed 004's protocol-control messages: a CMD header with the control flag,
/// handled by the control node itself and never sent to the SAN, answered with a STAT.
public enum ControlOperation: UInt8, Sendable, Hashable, CaseIterable {
    /// Lists the (target, LUN) pairs the processor may use: a data-in command whose data is
    /// ``StorageLimits/lunEntrySize``-byte entries (target u32, LUN u32, little-endian),
    /// RDMA-written into the CMD's segments like a read's data.
    case listLUNs = 1
    /// Aborts the command whose sequence number is the CMD's control argument.
    case abortCommand = 2
    /// Resets the state the control node holds for the CMD's (target, LUN): its commands in
    /// flight are aborted, and pending sense is cleared.
    case resetLUN = 3
}

/// The outcome of a protocol-control operation, in its STAT.
public enum ControlResult: UInt8, Sendable, Hashable, CaseIterable {
    /// Done (or, for a SCSI command's STAT, always this).
    case done = 0
    /// An abort named no command in flight.
    case noSuchCommand = 1
    /// The (target, LUN) is not in the processor's map.
    case noSuchLUN = 2
    /// The CMD could not be decoded; its header was read, so it is answered rather than lost.
    case malformedCommand = 3
}

/// Sizes and bounds of the storage messages.
public enum StorageLimits {
    /// The header every message starts with.
    public static let headerSize = 24
    /// The message version this build speaks; any other is refused.
    public static let version: UInt8 = 1
    /// A CMD before its segments.
    public static let commandFixedSize = 56
    /// One segment in a CMD.
    public static let segmentSize = 16
    /// A STAT before its sense data.
    public static let statusFixedSize = 32
    /// The most sense data a STAT carries.
    public static let maxSense = 252
    /// A BUF.
    public static let bufferSize = 48
    /// A TRAN.
    public static let transferSize = 32
    /// One entry of a listLUNs reply.
    public static let lunEntrySize = 8
    /// The largest CMD (with ``SegmentList/capacity`` segments).
    public static let maxCommandSize = commandFixedSize + segmentSize * SegmentList.capacity
    /// The largest STAT.
    public static let maxStatusSize = statusFixedSize + maxSense
    /// The largest message of any type.
    public static let maxMessageSize = maxCommandSize
}

/// The header fields every storage message has. The version and the message length are
/// implied: the version is ``StorageLimits/version``, the length the message's own.
public struct StorageHeader: Sendable, Hashable {
    public var type: StorageMessageType
    /// Data direction (CMD only; ``DataDirection/noData`` on every other type).
    public var direction: DataDirection
    /// A protocol-control CMD, or the STAT that answers one.
    public var isControl: Bool
    /// The command's sequence number, new for each CMD and repeated by every message about it.
    public var sequence: UInt64
    /// The SCSI target and LUN as the processor numbers them (its PAN's own numbering).
    public var target: UInt32
    public var lun: UInt32

    public init(type: StorageMessageType, direction: DataDirection = .noData, isControl: Bool = false,
                sequence: UInt64, target: UInt32, lun: UInt32) {
        self.type = type
        self.direction = direction
        self.isControl = isControl
        self.sequence = sequence
        self.target = target
        self.lun = lun
    }

    /// Flag bits: 0-1 data direction, 2 protocol control; the rest reserved (zero).
    static let directionMask: UInt16 = 0b11
    static let controlFlag: UInt16 = 0b100
    var flags: UInt16 { UInt16(direction.rawValue) | (isControl ? Self.controlFlag : 0) }
}

/// A CMD: a SCSI command for (target, LUN), or a protocol-control operation, with the
/// processor's registered regions its data comes from (a write) or goes to (a read).
public struct StorageCommand: Sendable, Hashable {
    public var sequence: UInt64
    public var target: UInt32
    public var lun: UInt32
    public var direction: DataDirection
    /// The CDB; empty for a protocol-control operation.
    public var cdb: CDB
    /// The processor's memory, in transfer order; empty without data.
    public var segments: SegmentList
    /// The protocol-control operation, nil for a SCSI command.
    public var control: ControlOperation?
    /// The control operation's argument: the sequence number an abort names; else 0.
    public var controlArgument: UInt64

    /// A SCSI command.
    public init(sequence: UInt64, target: UInt32, lun: UInt32, direction: DataDirection, cdb: CDB,
                segments: SegmentList = SegmentList()) {
        self.sequence = sequence
        self.target = target
        self.lun = lun
        self.direction = direction
        self.cdb = cdb
        self.segments = segments
        self.control = nil
        self.controlArgument = 0
    }

    /// A protocol-control operation (``ControlOperation/listLUNs`` takes `segments` for its
    /// reply and is data-in; the others carry no data).
    public init(sequence: UInt64, target: UInt32, lun: UInt32, control: ControlOperation, argument: UInt64 = 0,
                segments: SegmentList = SegmentList()) {
        self.sequence = sequence
        self.target = target
        self.lun = lun
        self.direction = segments.isEmpty ? .noData : .dataIn
        self.cdb = CDB()
        self.segments = segments
        self.control = control
        self.controlArgument = argument
    }

    /// The bytes of data the command moves: the sum of its segments' lengths.
    public var transferLength: UInt64 { segments.totalLength }
    /// The bytes its encoding takes.
    public var encodedSize: Int { StorageLimits.commandFixedSize + StorageLimits.segmentSize * segments.count }
}

/// A STAT: how a CMD completed.
public struct StorageStatus: Sendable, Hashable {
    public var sequence: UInt64
    public var target: UInt32
    public var lun: UInt32
    /// Answers a protocol-control CMD.
    public var isControl: Bool
    /// The SCSI status byte (GOOD 0x00, CHECK CONDITION 0x02 …; ``SCSIStatus``).
    public var scsiStatus: UInt8
    /// A control operation's outcome (``ControlResult/done`` for SCSI commands).
    public var controlResult: ControlResult
    /// Bytes of the command's transfer length that were not transferred.
    public var residual: UInt32
    /// Sense data (with CHECK CONDITION), at most ``StorageLimits/maxSense`` bytes.
    public var sense: InlineBytes<252>

    public init(sequence: UInt64, target: UInt32, lun: UInt32, isControl: Bool = false, scsiStatus: UInt8,
                controlResult: ControlResult = .done, residual: UInt32 = 0, sense: InlineBytes<252> = InlineBytes()) {
        self.sequence = sequence
        self.target = target
        self.lun = lun
        self.isControl = isControl
        self.scsiStatus = scsiStatus
        self.controlResult = controlResult
        self.residual = residual
        self.sense = sense
    }

    public var encodedSize: Int { StorageLimits.statusFixedSize + sense.count }
}

/// A BUF: the control node's buffer for one segment of a write.
public struct StorageBuffer: Sendable, Hashable {
    public var sequence: UInt64
    public var target: UInt32
    public var lun: UInt32
    /// The index of the CMD's segment this buffer is for.
    public var index: UInt32
    /// The control node's registered region the processor RDMA-WRITEs into.
    public var region: Segment

    public init(sequence: UInt64, target: UInt32, lun: UInt32, index: UInt32, region: Segment) {
        self.sequence = sequence
        self.target = target
        self.lun = lun
        self.index = index
        self.region = region
    }
}

/// A TRAN: the processor has RDMA-written one segment into its BUF's buffer.
public struct StorageTransfer: Sendable, Hashable {
    public var sequence: UInt64
    public var target: UInt32
    public var lun: UInt32
    /// The index of the CMD's segment (and of the BUF) that was written.
    public var index: UInt32
    /// The bytes written.
    public var length: UInt32

    public init(sequence: UInt64, target: UInt32, lun: UInt32, index: UInt32, length: UInt32) {
        self.sequence = sequence
        self.target = target
        self.lun = lun
        self.index = index
        self.length = length
    }
}

/// One storage message of any type. Decoding (``init(decoding:)``) and encoding
/// (``encode(into:)``) allocate nothing: the CDB, segments and sense data are held inline.
public enum StorageMessage: Sendable, Hashable {
    case command(StorageCommand)
    case status(StorageStatus)
    case buffer(StorageBuffer)
    case transfer(StorageTransfer)

    public var type: StorageMessageType {
        switch self {
        case .command: .command
        case .status: .status
        case .buffer: .buffer
        case .transfer: .transfer
        }
    }

    /// The header this message is sent with.
    public var header: StorageHeader {
        switch self {
        case .command(let c):
            StorageHeader(type: .command, direction: c.direction, isControl: c.control != nil,
                          sequence: c.sequence, target: c.target, lun: c.lun)
        case .status(let s):
            StorageHeader(type: .status, isControl: s.isControl, sequence: s.sequence, target: s.target, lun: s.lun)
        case .buffer(let b):
            StorageHeader(type: .buffer, sequence: b.sequence, target: b.target, lun: b.lun)
        case .transfer(let t):
            StorageHeader(type: .transfer, sequence: t.sequence, target: t.target, lun: t.lun)
        }
    }

    /// The bytes its encoding takes.
    public var encodedSize: Int {
        switch self {
        case .command(let c): c.encodedSize
        case .status(let s): s.encodedSize
        case .buffer: StorageLimits.bufferSize
        case .transfer: StorageLimits.transferSize
        }
    }
}
