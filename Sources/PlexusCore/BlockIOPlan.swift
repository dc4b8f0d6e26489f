#if canImport(Glibc)
import Glibc
#endif

/// The checks and the arithmetic of block I/O, apart from the engine and the kernel: whether a
/// request fits its file, and what a read's or write's completion means for its transfer.
package enum BlockIOPlan {
    /// Whether a request of `length` bytes at `fileOffset` fits a file of `fileSize` bytes and,
    /// for direct I/O, its alignments (`memoryAddress` is where the bytes go or come from).
    /// Returns the reason it does not, or nil.
    /// - Complexity: O(1).
    @inline(__always)
    package static func refusal(fileOffset: UInt64, length: Int, fileSize: UInt64, offsetAlignment: Int,
                                memoryAddress: UInt, memoryAlignment: Int) -> BlockIORefusal? {
        guard length > 0, length <= Engine.maxBlockIOLength else { return .badLength }
        let (end, overflow) = fileOffset.addingReportingOverflow(UInt64(length))
        guard !overflow, end <= fileSize else { return .outOfRange }
        if offsetAlignment > 1 {
            let a = UInt64(offsetAlignment)
            if fileOffset % a != 0 || UInt64(length) % a != 0 { return .misaligned }
        }
        if memoryAlignment > 1 && memoryAddress % UInt(memoryAlignment) != 0 { return .misaligned }
        return nil
    }

    /// What one completion of a read or write does to its transfer.
    package enum Step: Equatable, Sendable {
        /// Submit the rest: `done` bytes of the transfer are done.
        case resubmit(done: UInt32)
        /// The transfer is over: report `result` (bytes done, or -errno).
        case complete(result: Int32)
    }

    /// The step after a read or write of the bytes from `done` to `length` completed with `res`.
    ///
    /// A short transfer is continued until the whole length is done; a read that meets the end
    /// of the file (`res` 0) completes short, with the bytes done before it; an error completes
    /// with the error, whatever was done before. While the engine stops, a short transfer is not
    /// continued: it completes with `-ECANCELED`.
    /// - Complexity: O(1).
    @inline(__always)
    package static func step(done: UInt32, length: UInt32, res: Int32, stopping: Bool) -> Step {
        if res < 0 { return .complete(result: res) }
        if res == 0 { return .complete(result: Int32(done)) }
        let total = done &+ UInt32(res)
        if total >= length { return .complete(result: Int32(min(total, length))) }
        if stopping { return .complete(result: -ECANCELED) }
        return .resubmit(done: total)
    }
}

/// One operation of the engine's block I/O.
enum BlockIOOperation: UInt8 {
    case read, write, flush, discard
}

/// Where a read's or write's memory is.
enum BlockIOMemory: UInt8 {
    case none, region, frame
}

/// A block I/O operation in flight: one preallocated record per operation. It holds no pointer:
/// the address is computed from the region (by key) or the pool frame (by slot) each time an
/// SQE is prepared, and both stay in place until the operation completes.
struct BlockIORecord {
    var token: UInt32 = 0
    /// The file's slot.
    var file: UInt16 = 0
    var operation: BlockIOOperation = .read
    var memory: BlockIOMemory = .none
    /// A write with `RWF_DSYNC`.
    var writeThrough = false
    /// The region's key, or the frame's pool slot.
    var memoryID: UInt32 = 0
    /// The offset of the first byte in the region (0 for a frame: its payload's start).
    var memoryOffset: Int = 0
    var fileOffset: UInt64 = 0
    var length: UInt32 = 0
    /// Bytes done so far: a short transfer continues from here.
    var done: UInt32 = 0
}

/// An open backing file of an engine.
struct BlockFileSlot {
    var fd: Int32
    /// Bumped when the slot's file is closed, so that an old handle is refused.
    var generation: UInt16
    /// Accepting I/O (false once closing).
    var open: Bool
    var inFlight: Int = 0
    var kind: BlockFile.Kind
    var readOnly: Bool
    var size: UInt64
    var offsetAlignment: Int
    var memoryAlignment: Int
}
