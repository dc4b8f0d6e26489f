import PlexusCore
import PlexusRCLAN

/// A registered region carved into equal slots: the staging memory of a storage target's
/// commands (one slot per command in flight), or the memory a host adapter's data lives in.
///
/// It holds the region's base address, taken once at setup: the region must stay registered
/// as long as this value is used (the owner deregisters it last). All pointer arithmetic of the
/// storage services is here.
struct StagingMemory {
    let key: RegionKey
    let base: UnsafeMutableRawPointer
    let size: Int
    let slotSize: Int

    /// Registers a region of `slots` × `slotSize` bytes that the peers of `writers` may RDMA
    /// WRITE into (none: local memory only).
    init(layer: RCLAN, slots: Int, slotSize: Int, writers: [RVI]) throws(PlexusError) {
        let bytes = slots * slotSize
        let key = try layer.registerRegion(bytes: bytes, writers: writers, permissions: writers.isEmpty ? [] : .remoteWrite)
        try self.init(key: key, layer: layer, slotSize: slotSize)
    }

    /// An existing region of `layer`'s engine.
    init(key: RegionKey, layer: RCLAN, slotSize: Int) throws(PlexusError) {
        var base: UnsafeMutableRawPointer?
        var size = 0
        do {
            try layer.engine.withRegion(key) { r in
                base = r.baseAddress
                size = r.count
            }
        } catch {
            throw PlexusError(.noSuchRegion, "no region with \(key)")
        }
        guard let base else { throw PlexusError(.noSuchRegion, "\(key) has no memory") }
        self.key = key
        self.base = base
        self.size = size
        self.slotSize = slotSize
    }

    /// The offset of slot `i` in the region.
    func offset(ofSlot i: Int) -> Int { i * slotSize }

    /// `length` bytes at `offset` in the region, or nil when they are not inside it.
    func bytes(at offset: Int, length: Int) -> UnsafeMutableRawBufferPointer? {
        guard offset >= 0, length >= 0, offset <= size, length <= size - offset else { return nil }
        return UnsafeMutableRawBufferPointer(start: base + offset, count: length)
    }

    /// Copies `count` bytes from `source` to `offset`; false when they do not fit.
    func copy(from source: UnsafeRawPointer, count: Int, to offset: Int) -> Bool {
        guard let dst = bytes(at: offset, length: count) else { return false }
        if count > 0 { dst.baseAddress!.copyMemory(from: source, byteCount: count) }
        return true
    }
}
