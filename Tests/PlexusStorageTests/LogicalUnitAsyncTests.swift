import PlexusCore
import PlexusStorage
import Testing

@Suite("SCSI logical unit: start and finish without blocking")
struct LogicalUnitAsyncTests {
    @Test("READ, WRITE and SYNCHRONIZE CACHE return their block step; the rest completes at once")
    func steps() throws {
        let bed = try UnitBed()
        var none: IOBuffer? = nil
        #expect(bed.unit.begin(.read10(lba: 4, blocks: 2), buffer: &none, transferLength: 1024)
                == .block(SCSIBlockStep(read: true, offset: 2048, length: 1024, lba: 4)))
        guard case .block(let w) = bed.unit.begin(.write16(lba: 8, blocks: 1, fua: true), buffer: &none, transferLength: 512),
              case .write(let fua) = w.operation
        else {
            Issue.record("WRITE(16) did not return a write step")
            return
        }
        #expect(fua && w.offset == 4096 && w.length == 512)
        guard case .block(let f) = bed.unit.begin(.synchronizeCache10(), buffer: &none, transferLength: 0),
              case .flush = f.operation else {
            Issue.record("SYNCHRONIZE CACHE did not return a flush")
            return
        }
        #expect(bed.unit.begin(.testUnitReady(), buffer: &none, transferLength: 0) == .complete(.good()))
        var buffer = bed.pool.take()
        guard case .complete(let cap) = bed.unit.begin(.readCapacity10(), buffer: &buffer, transferLength: 8) else {
            Issue.record("READ CAPACITY did not complete at once")
            return
        }
        #expect(cap == .good(8) && buffer!.prefix(8) == [0, 0, 0x07, 0xFF, 0, 0, 2, 0])
    }

    @Test("refusals complete at once and are kept for REQUEST SENSE; finish maps device errors to sense")
    func refusals() throws {
        let bed = try UnitBed(readOnly: true)
        var none: IOBuffer? = nil
        guard case .complete(let r) = bed.unit.begin(.write10(lba: 0, blocks: 1), buffer: &none, transferLength: 512) else {
            Issue.record("a write to a read-only unit was not refused at once")
            return
        }
        expectCheck(r, .writeProtected)
        #expect(bed.unit.pendingSense == .writeProtected)
        guard case .complete(let far) = bed.unit.begin(.read10(lba: 4096, blocks: 1), buffer: &none, transferLength: 512) else {
            Issue.record("a read past the end was not refused at once")
            return
        }
        expectCheck(far, .lbaOutOfRange)
        guard case .complete(let long) = bed.unit.begin(.read10(lba: 0, blocks: 4), buffer: &none, transferLength: 512) else {
            Issue.record("a read longer than its buffer was not refused at once")
            return
        }
        expectCheck(long, .invalidFieldInCDB(byte: 7))
        guard case .block(let step) = bed.unit.begin(.read10(lba: 7, blocks: 1), buffer: &none, transferLength: 512) else {
            Issue.record("READ did not return a step")
            return
        }
        #expect(bed.unit.finish(step, result: .success(512)) == .good(512))
        expectCheck(bed.unit.finish(step, result: .failure(.io(5))), .unrecoveredReadError(lba: 7))
        bed.unit.clearPendingSense()
        #expect(bed.unit.pendingSense == nil)
    }

    @Test("UNMAP: begins as the data-out of its parameter list; the list then names one range to release, or is refused")
    func unmapInTwoSteps() throws {
        let bed = try UnitBed()
        var none: IOBuffer? = nil
        guard case .block(let list) = bed.unit.begin(.unmap(parameterListLength: 24), buffer: &none, transferLength: 4096),
              case .unmap = list.operation
        else {
            Issue.record("UNMAP did not ask for its parameter list")
            return
        }
        #expect(list.length == 24)
        #expect(bed.unit.begin(.unmap(parameterListLength: 0), buffer: &none, transferLength: 4096) == .complete(.good()))
        #expect(bed.unit.begin(.unmap(parameterListLength: 24), buffer: &none, transferLength: 16)
                == .complete(.checkCondition(.parameterListLengthError)))
        func step(_ ranges: [(lba: UInt64, blocks: UInt32)]) -> SCSIStart {
            let bytes = LogicalUnitTests.unmapList(ranges)
            return bytes.withUnsafeBytes { bed.unit.unmapStep(list: $0.bytes) }
        }
        guard case .block(let range) = step([(lba: 8, blocks: 16)]), case .unmap = range.operation else {
            Issue.record("a one-range list did not give its range")
            return
        }
        #expect(range.offset == 8 * 512 && range.length == 16 * 512 && range.lba == 8)
        #expect(step([(lba: 2047, blocks: 2)]) == .complete(.checkCondition(.lbaOutOfRange)))
        #expect(step([(lba: 0, blocks: 0)]) == .complete(.good()))
        guard case .complete(let two) = step([(lba: 0, blocks: 1), (lba: 8, blocks: 1)]) else {
            Issue.record("a list of two ranges was not refused")
            return
        }
        #expect(two.status == .checkCondition && two.sense?.key == .illegalRequest)
        let readOnly = try UnitBed(readOnly: true)
        #expect(readOnly.unit.begin(.unmap(parameterListLength: 24), buffer: &none, transferLength: 4096)
                == .complete(.checkCondition(.writeProtected)))
    }
}

extension SCSIBlockStep {
    /// A read or write step as ``SCSILogicalUnit/begin(_:buffer:transferLength:)`` builds it for a
    /// READ(10) or WRITE(10).
    init(read: Bool, offset: UInt64, length: Int, lba: UInt64) {
        self.init(operation: read ? .read : .write(fua: false), offset: offset, length: length, lba: lba, lengthField: 7)
    }

}
