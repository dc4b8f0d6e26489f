import PlexusCore

/// A backing file opened on the engine's ring (``PlexusCore/Engine/openBlockFile(_:access:direct:)``)
/// seen as a ``BlockDevice`` for its geometry: what a ``SCSILogicalUnit`` needs to answer
/// INQUIRY and READ CAPACITY and to check LBAs.
///
/// Its I/O does not go through ``BlockDevice/submit(_:)``: the storage target starts each
/// command with ``SCSILogicalUnit/begin(_:buffer:transferLength:)`` and submits the returned
/// ``SCSIBlockStep`` to the engine itself, into its registered staging memory, and the engine
/// hands the completion back on its own thread. A request submitted here completes at once with
/// ``BlockIOError/unsupported``.
public final class EngineFileDevice: BlockDevice {
    public let file: BlockFile
    public let geometry: BlockGeometry
    public var queueDepth: Int { 1 }
    public var inFlight: Int { 0 }
    var refused: (tag: UInt64, pending: Bool) = (0, false)

    /// `file` in blocks of `blockSize` bytes (at least the file's logical block size); a tail
    /// shorter than a block is not addressable.
    public init(file: BlockFile, blockSize: Int = 512) {
        self.file = file
        let bs = max(blockSize, file.logicalBlockSize)
        // A regular file releases a range by punching a hole (it then reads zeroes); a block
        // device's discard needs a kernel this code cannot count on, so it is not offered.
        let punches = file.kind == .regularFile && file.access != .readOnly
        geometry = BlockGeometry(blockSize: bs, blockCount: file.size / UInt64(bs), readOnly: file.access == .readOnly,
                                 canUnmap: punches, unmapReadsZeroes: punches, alignment: 1)
    }

    public func submit(_ request: consuming BlockRequest) {
        refused = (request.tag, true)
    }

    @discardableResult
    public func reap(waiting: Bool, _ body: (consuming BlockCompletion) -> Void) -> Int {
        guard refused.pending else { return 0 }
        refused.pending = false
        body(BlockCompletion(tag: refused.tag, result: .failure(.unsupported), buffer: nil))
        return 1
    }
}
