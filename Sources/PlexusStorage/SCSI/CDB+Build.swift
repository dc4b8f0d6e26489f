// CDB builders for the processor side: each writes the CDB SPC-4/SBC-3 define, control byte 0.

extension CDB {
    /// TEST UNIT READY (6 bytes).
    public static func testUnitReady() -> CDB { CDB(opcode: SCSIOperation.testUnitReady, length: 6) }

    /// REQUEST SENSE (6 bytes), fixed format.
    public static func requestSense(allocationLength: UInt8 = UInt8(SenseData.fixedSize)) -> CDB {
        var c = CDB(opcode: SCSIOperation.requestSense, length: 6)
        c[4] = allocationLength
        return c
    }

    /// INQUIRY (6 bytes) for the standard data.
    public static func inquiry(allocationLength: UInt16) -> CDB {
        var c = CDB(opcode: SCSIOperation.inquiry, length: 6)
        c.setField(3, width: 2, UInt64(allocationLength))
        return c
    }

    /// INQUIRY (6 bytes) for vital product data page `page`.
    public static func inquiry(page: UInt8, allocationLength: UInt16) -> CDB {
        var c = inquiry(allocationLength: allocationLength)
        c[1] = 1
        c[2] = page
        return c
    }

    /// READ CAPACITY(10).
    public static func readCapacity10() -> CDB { CDB(opcode: SCSIOperation.readCapacity10, length: 10) }

    /// READ CAPACITY(16): SERVICE ACTION IN(16) with service action 0x10.
    public static func readCapacity16(allocationLength: UInt32 = 32) -> CDB {
        var c = CDB(opcode: SCSIOperation.serviceActionIn16, length: 16)
        c[1] = SCSIOperation.readCapacity16ServiceAction
        c.setField(10, width: 4, UInt64(allocationLength))
        return c
    }

    /// READ(10): `blocks` from `lba`.
    public static func read10(lba: UInt32, blocks: UInt16, fua: Bool = false) -> CDB {
        rw10(SCSIOperation.read10, lba: lba, blocks: blocks, fua: fua)
    }

    /// WRITE(10): `blocks` at `lba`; with `fua`, on stable storage before completion.
    public static func write10(lba: UInt32, blocks: UInt16, fua: Bool = false) -> CDB {
        rw10(SCSIOperation.write10, lba: lba, blocks: blocks, fua: fua)
    }

    /// READ(16).
    public static func read16(lba: UInt64, blocks: UInt32, fua: Bool = false) -> CDB {
        rw16(SCSIOperation.read16, lba: lba, blocks: blocks, fua: fua)
    }

    /// WRITE(16).
    public static func write16(lba: UInt64, blocks: UInt32, fua: Bool = false) -> CDB {
        rw16(SCSIOperation.write16, lba: lba, blocks: blocks, fua: fua)
    }

    /// SYNCHRONIZE CACHE(10) of `blocks` from `lba` (0, 0: the whole unit).
    public static func synchronizeCache10(lba: UInt32 = 0, blocks: UInt16 = 0, immediate: Bool = false) -> CDB {
        var c = rw10(SCSIOperation.synchronizeCache10, lba: lba, blocks: blocks, fua: false)
        c[1] = immediate ? 0x02 : 0
        return c
    }

    /// SYNCHRONIZE CACHE(16).
    public static func synchronizeCache16(lba: UInt64 = 0, blocks: UInt32 = 0, immediate: Bool = false) -> CDB {
        var c = rw16(SCSIOperation.synchronizeCache16, lba: lba, blocks: blocks, fua: false)
        c[1] = immediate ? 0x02 : 0
        return c
    }

    /// REPORT LUNS (12 bytes).
    public static func reportLUNs(selectReport: UInt8 = 0, allocationLength: UInt32) -> CDB {
        var c = CDB(opcode: SCSIOperation.reportLUNs, length: 12)
        c[2] = selectReport
        c.setField(6, width: 4, UInt64(allocationLength))
        return c
    }

    /// UNMAP (10 bytes) with a parameter list of `parameterListLength` bytes
    /// (``UnmapParameterList/encode(_:into:)`` writes one).
    public static func unmap(parameterListLength: UInt16) -> CDB {
        var c = CDB(opcode: SCSIOperation.unmap, length: 10)
        c.setField(7, width: 2, UInt64(parameterListLength))
        return c
    }

    static func rw10(_ op: UInt8, lba: UInt32, blocks: UInt16, fua: Bool) -> CDB {
        var c = CDB(opcode: op, length: 10)
        c[1] = fua ? 0x08 : 0
        c.setField(2, width: 4, UInt64(lba))
        c.setField(7, width: 2, UInt64(blocks))
        return c
    }

    static func rw16(_ op: UInt8, lba: UInt64, blocks: UInt32, fua: Bool) -> CDB {
        var c = CDB(opcode: op, length: 16)
        c[1] = fua ? 0x08 : 0
        c.setField(2, width: 8, lba)
        c.setField(10, width: 4, UInt64(blocks))
        return c
    }
}
