/// The answers for a (target, LUN) that is not in a processor's storage map: seed 004's access
/// control ("Configuration Component") keeps such a command from ever reaching the SAN.
///
/// As SPC-4 has it for a LUN with no logical unit: INQUIRY succeeds with peripheral qualifier 3
/// and device type 0x1F, REQUEST SENSE succeeds with LOGICAL UNIT NOT SUPPORTED as its data, and
/// every other command is CHECK CONDITION, ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (25/00).
public enum UnmappedLUN {
    public static func execute(_ cdb: CDB, buffer: inout IOBuffer?, transferLength: Int) -> SCSIResult {
        let identity = LogicalUnitIdentity(serial: "", identifier: 0)
        switch cdb.operationCode {
        case SCSIOperation.inquiry where cdb.count >= 6 && cdb[1] & 1 == 0:
            let limit = min(Int(cdb.field(3, width: 2)), transferLength)
            return .dataIn(&buffer, limit: limit) { out, limit in
                SCSIData.writeStandardInquiry(identity, connected: false, into: &out, limit: limit)
            }
        case SCSIOperation.requestSense where cdb.count >= 6:
            let limit = min(Int(cdb[4]), transferLength)
            return .dataIn(&buffer, limit: limit) { out, limit in
                SenseData.logicalUnitNotSupported.encodeFixed(into: &out, limit: limit)
            }
        default:
            return .checkCondition(.logicalUnitNotSupported)
        }
    }
}
