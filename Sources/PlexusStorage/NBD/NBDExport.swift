/// A block device an ``NBDServer`` offers under a name.
///
/// The geometry is known when the export is made (what NBD_OPT_INFO and NBD_OPT_GO report);
/// each connection opens its own device with ``openDevice`` on its own thread, so a device never
/// crosses threads. A file is ``file(path:name:description:blockSize:readOnly:)``; any other
/// ``BlockDevice`` is offered through its own `openDevice`.
public struct NBDExport: Sendable {
    /// The export's name ("" is the default export).
    public var name: String
    /// A description for people (NBD_INFO_DESCRIPTION).
    public var description: String
    public var geometry: BlockGeometry
    /// Offered read-only (also when the geometry is): writes and trims are refused with EPERM.
    public var readOnly: Bool
    /// Every connection sees every other's completed writes and flushes (NBD_FLAG_CAN_MULTI_CONN).
    public var multiConnection: Bool
    /// Opens the device for one connection, on that connection's thread.
    public var openDevice: @Sendable () throws(BlockIOError) -> any BlockDevice
    /// For a disk of a processor's storage map (``VirtualDiskExporter/export(_:)``): the lanes
    /// its connections hand requests to the engine through, several in flight at once. A
    /// connection then opens no device.
    public var lanes: DiskLaneSource?

    public init(name: String, description: String = "", geometry: BlockGeometry, readOnly: Bool = false,
                multiConnection: Bool = false, openDevice: @escaping @Sendable () throws(BlockIOError) -> any BlockDevice) {
        self.name = name
        self.description = description
        self.geometry = geometry
        self.readOnly = readOnly || geometry.readOnly
        self.multiConnection = multiConnection
        self.openDevice = openDevice
        lanes = nil
    }

    /// A disk whose connections claim a lane of `lanes` (``VirtualDiskExporter/export(_:)``).
    public init(name: String, description: String = "", geometry: BlockGeometry, readOnly: Bool = false,
                multiConnection: Bool = false, lanes: DiskLaneSource) {
        self.init(name: name, description: description, geometry: geometry, readOnly: readOnly,
                  multiConnection: multiConnection) { () throws(BlockIOError) -> any BlockDevice in throw .unsupported }
        self.lanes = lanes
    }

    /// The file at `path` through ``SynchronousFileBlockDevice``, one device (one descriptor)
    /// per connection. Every connection's writes reach the same file, and a flush on any of them
    /// flushes the file, so it is offered to several connections at once.
    public static func file(path: String, name: String = "", description: String = "", blockSize: Int = 512,
                            readOnly: Bool = false) throws(BlockIOError) -> NBDExport {
        let probe = try SynchronousFileBlockDevice(path: path, blockSize: blockSize, readOnly: readOnly, queueDepth: 1)
        return NBDExport(name: name, description: description, geometry: probe.geometry, readOnly: readOnly,
                         multiConnection: true) { () throws(BlockIOError) -> any BlockDevice in
            try SynchronousFileBlockDevice(path: path, blockSize: blockSize, readOnly: readOnly, queueDepth: 1)
        }
    }

    /// The export's size in bytes.
    public var size: UInt64 { geometry.byteCount }

    /// Unmap is offered (the device can, and the export is writable).
    public var canTrim: Bool { geometry.canUnmap && !readOnly }

    /// The transmission flags it is offered with.
    public var transmissionFlags: UInt16 {
        var f = NBDProtocol.flagHasFlags | NBDProtocol.flagSendFlush | NBDProtocol.flagSendFUA
        if readOnly { f |= NBDProtocol.flagReadOnly }
        if canTrim { f |= NBDProtocol.flagSendTrim }
        if multiConnection { f |= NBDProtocol.flagCanMultiConnection }
        return f
    }

    /// The block size constraints (NBD_INFO_BLOCK_SIZE) with requests of at most `maxPayload`
    /// bytes: the minimum is the device's alignment, the preferred 4096 (or the minimum, if
    /// larger), the maximum `maxPayload` cut to a multiple of the minimum.
    public func blockSizes(maxPayload: Int) -> (minimum: UInt32, preferred: UInt32, maximum: UInt32) {
        let minimum = max(1, geometry.alignment)
        let preferred = max(4096, minimum)
        let limit = payloadLimit(maxPayload)
        let maximum = max(minimum, limit / minimum * minimum)
        return (UInt32(minimum), UInt32(preferred), UInt32(clamping: maximum))
    }

    /// The largest request payload on a server that takes `maxPayload`: a disk's lane holds at
    /// most all its slots.
    public func payloadLimit(_ maxPayload: Int) -> Int { min(maxPayload, lanes?.maxRequest ?? maxPayload) }
}
