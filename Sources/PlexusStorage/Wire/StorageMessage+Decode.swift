import PlexusCore

extension StorageHeader {
    /// Reads and checks the header of the message `bytes` (the whole message): at least 24
    /// bytes, this build's version, a known type, valid flags, and a length field equal to the
    /// byte count. What follows the header is not looked at; ``StorageMessage/init(decoding:)``
    /// checks it.
    ///
    /// A receiver that cannot decode a CMD can still read its header and answer it.
    public init(parsing bytes: RawSpan) throws(StorageMessageError) {
        guard bytes.byteCount >= StorageLimits.headerSize else {
            throw .short(needed: StorageLimits.headerSize, available: bytes.byteCount)
        }
        let version = bytes.byte(0)
        guard version == StorageLimits.version else { throw .badVersion(version) }
        let rawType = bytes.byte(1)
        guard let type = StorageMessageType(rawValue: rawType) else { throw .badType(rawType) }
        let flags: UInt16 = bytes.loadLE(2)
        guard flags & ~(Self.directionMask | Self.controlFlag) == 0,
              let direction = DataDirection(rawValue: UInt8(flags & Self.directionMask))
        else { throw .badFlags(flags) }
        let isControl = flags & Self.controlFlag != 0
        switch type {
        case .command: break
        case .status: guard direction == .noData else { throw .badFlags(flags) }
        case .buffer, .transfer: guard flags == 0 else { throw .badFlags(flags) }
        }
        let length: UInt32 = bytes.loadLE(4)
        guard length == bytes.byteCount else { throw .lengthMismatch(declared: length, expected: bytes.byteCount) }
        self.init(type: type, direction: direction, isControl: isControl, sequence: bytes.loadLE(8),
                  target: bytes.loadLE(16), lun: bytes.loadLE(20))
    }
}

extension StorageMessage {
    /// Decodes the message `bytes` (exactly one message), checking every field: the header
    /// (``StorageHeader/init(parsing:)``), the size its type and counts imply, counts and
    /// lengths against their bounds, reserved bytes and CDB padding (zero), and the consistency
    /// of direction, segments, transfer length and control operation. Allocates nothing.
    ///
    /// - Complexity: O(number of segments + sense bytes).
    public init(decoding bytes: RawSpan) throws(StorageMessageError) {
        let header = try StorageHeader(parsing: bytes)
        switch header.type {
        case .command: self = .command(try StorageCommand(decoding: bytes, header: header))
        case .status: self = .status(try StorageStatus(decoding: bytes, header: header))
        case .buffer:
            try Self.expectSize(StorageLimits.bufferSize, bytes)
            try Self.expectZero(bytes, at: 44, count: 4)
            let region = Segment(key: RegionKey(rawValue: bytes.loadLE(28)), offset: bytes.loadLE(32),
                                 length: bytes.loadLE(40))
            self = .buffer(StorageBuffer(sequence: header.sequence, target: header.target, lun: header.lun,
                                         index: bytes.loadLE(24), region: region))
        case .transfer:
            try Self.expectSize(StorageLimits.transferSize, bytes)
            self = .transfer(StorageTransfer(sequence: header.sequence, target: header.target, lun: header.lun,
                                             index: bytes.loadLE(24), length: bytes.loadLE(28)))
        }
    }

    /// Refuses `bytes` unless it is exactly `size` bytes (short when fewer).
    static func expectSize(_ size: Int, _ bytes: RawSpan) throws(StorageMessageError) {
        guard bytes.byteCount >= size else { throw .short(needed: size, available: bytes.byteCount) }
        guard bytes.byteCount == size else { throw .lengthMismatch(declared: UInt32(bytes.byteCount), expected: size) }
    }

    /// Refuses `bytes` unless the `count` bytes at `offset` are zero.
    static func expectZero(_ bytes: RawSpan, at offset: Int, count: Int) throws(StorageMessageError) {
        for i in offset..<(offset + count) where bytes.byte(i) != 0 { throw .reservedNotZero(offset: i) }
    }
}

extension StorageCommand {
    init(decoding bytes: RawSpan, header: StorageHeader) throws(StorageMessageError) {
        let fixed = StorageLimits.commandFixedSize
        guard bytes.byteCount >= fixed else { throw .short(needed: fixed, available: bytes.byteCount) }
        let cdbLength = Int(bytes.byte(24))
        guard cdbLength <= CDB.maxLength else { throw .cdbTooLong(cdbLength) }
        let count = Int(bytes.byte(25))
        guard count <= SegmentList.capacity else { throw .tooManySegments(count) }
        let size = fixed + StorageLimits.segmentSize * count
        guard bytes.byteCount == size else {
            throw bytes.byteCount < size ? .short(needed: size, available: bytes.byteCount)
                                         : .lengthMismatch(declared: UInt32(bytes.byteCount), expected: size)
        }
        let rawOperation = bytes.byte(26)
        try StorageMessage.expectZero(bytes, at: 27, count: 1)
        // The CDB's padding is zero, so that a message has exactly one encoding.
        try StorageMessage.expectZero(bytes, at: 32 + cdbLength, count: CDB.maxLength - cdbLength)
        var cdb = CDB()
        for i in 0..<cdbLength { cdb.bytes.append(bytes.byte(32 + i)) }
        var segments = SegmentList()
        for i in 0..<count {
            let o = fixed + StorageLimits.segmentSize * i
            segments.append(Segment(key: RegionKey(rawValue: bytes.loadLE(o)), offset: bytes.loadLE(o + 8),
                                    length: bytes.loadLE(o + 4)))
        }
        let control: ControlOperation?
        if header.isControl {
            guard let op = ControlOperation(rawValue: rawOperation) else { throw .badControlOperation(rawOperation) }
            control = op
        } else {
            guard rawOperation == 0 else { throw .badControlOperation(rawOperation) }
            control = nil
        }
        self.init(sequence: header.sequence, target: header.target, lun: header.lun, direction: header.direction,
                  cdb: cdb, segments: segments)
        self.control = control
        self.controlArgument = bytes.loadLE(48)
        let declared: UInt32 = bytes.loadLE(28)
        try validate(declaredTransfer: UInt64(declared))
    }

    /// The checks both encoding and decoding make, so that nothing is sent that the other end
    /// would refuse. `declaredTransfer` is the transfer length field (decoding), or nil.
    func validate(declaredTransfer: UInt64? = nil) throws(StorageMessageError) {
        if let op = control {
            guard cdb.isEmpty else { throw .cdbOnControl }
            let wanted: DataDirection = op == .listLUNs ? .dataIn : .noData
            guard direction == wanted else { throw .badControlOperation(op.rawValue) }
            guard op == .abortCommand || controlArgument == 0 else { throw .unexpectedControlArgument(controlArgument) }
        } else {
            guard !cdb.isEmpty else { throw .missingCDB }
            guard controlArgument == 0 else { throw .unexpectedControlArgument(controlArgument) }
        }
        if direction == .noData && !segments.isEmpty { throw .segmentsWithoutDirection }
        if direction != .noData && segments.isEmpty { throw .directionWithoutSegments }
        for (i, s) in segments.enumerated() where s.length == 0 { throw .emptySegment(index: i) }
        let total = segments.totalLength
        if let d = declaredTransfer, d != total { throw .transferLengthMismatch(declared: d, segments: total) }
        guard total <= UInt32.max else { throw .transferLengthMismatch(declared: UInt64(UInt32.max), segments: total) }
    }
}

extension StorageStatus {
    init(decoding bytes: RawSpan, header: StorageHeader) throws(StorageMessageError) {
        let fixed = StorageLimits.statusFixedSize
        guard bytes.byteCount >= fixed else { throw .short(needed: fixed, available: bytes.byteCount) }
        let senseLength = Int(bytes.byte(25))
        guard senseLength <= StorageLimits.maxSense else { throw .senseTooLong(senseLength) }
        let size = fixed + senseLength
        guard bytes.byteCount == size else {
            throw bytes.byteCount < size ? .short(needed: size, available: bytes.byteCount)
                                         : .lengthMismatch(declared: UInt32(bytes.byteCount), expected: size)
        }
        let rawResult = bytes.byte(26)
        guard let result = ControlResult(rawValue: rawResult), header.isControl || result == .done else {
            throw .badControlResult(rawResult)
        }
        try StorageMessage.expectZero(bytes, at: 27, count: 1)
        var sense = InlineBytes<252>()
        for i in 0..<senseLength { sense.append(bytes.byte(fixed + i)) }
        self.init(sequence: header.sequence, target: header.target, lun: header.lun, isControl: header.isControl,
                  scsiStatus: bytes.byte(24), controlResult: result, residual: bytes.loadLE(28), sense: sense)
    }
}
