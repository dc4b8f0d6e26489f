// MARK: - The privileged interface: establishing VIs and registering regions.
//
// Seed, "Virtual LAN Server" and "Giganet Driver": processing nodes cannot create paths; the
// switch manager on the control nodes creates and removes VIs. These methods are `package`:
// the data path (drivers) cannot reach them; the control plane reaches them through
// ``FabricControl``.

extension Engine {
    package func establish(_ vi: VI, peer: FabricAddress, remoteVI: UInt32) throws(PlexusError) {
        let port = self.port(vi.fabric)
        guard let e = port.entry(vi.number) else {
            throw PlexusError(.noSuchVI, "\(vi): VI numbers on this port run from 1 to \(port.tableCapacity - 1)")
        }
        guard !e.pointee.established else { throw PlexusError(.viInUse, "\(vi) is already established") }
        guard remoteVI != 0 else { throw PlexusError(.configuration, "remote VI number 0 is never valid") }
        guard peer.port != 0, peer.ip != 0 else { throw PlexusError(.configuration, "peer address \(peer) is not usable") }
        let generation = e.pointee.generation &+ 1
        e.pointee = VIEntry(peer: peer.sockaddr, established: true, remoteVI: remoteVI, posted: 0, counters: VICounters(),
                            generation: generation)
        port.established += 1
    }

    package func teardown(_ vi: VI) throws(PlexusError) {
        guard let e = port(vi.fabric).entry(vi.number), e.pointee.established else {
            throw PlexusError(.noSuchVI, "\(vi) is not established")
        }
        port(vi.fabric).established -= 1
        // The peer address stays in place: sends already queued still point at it.
        e.pointee.established = false
        e.pointee.posted = 0
        dropReassembly(vi)
    }

    package func registerRegion(bytes: Int, writers: [VI], permissions: RegionPermissions) throws(PlexusError)
        -> RegionKey
    {
        guard bytes > 0 else { throw PlexusError(.configuration, "a region needs a positive size") }
        guard !writers.isEmpty else { throw PlexusError(.configuration, "a region needs at least one writer VI") }
        var granted: [Region.Writer] = []
        for w in writers {
            guard let e = port(w.fabric).entry(w.number), e.pointee.established else {
                throw PlexusError(.noSuchVI, "writer \(w) is not established")
            }
            granted.append(Region.Writer(vi: w, generation: e.pointee.generation))
        }
        return try regions.insert(size: bytes, writers: granted, permissions: permissions,
                                  hugePages: configuration.hugePages)
    }

    package func deregisterRegion(_ key: RegionKey) throws(PlexusError) {
        guard regions.remove(key) else { throw PlexusError(.noSuchRegion, "no region with \(key)") }
    }

    /// Reads or writes a local region in place.
    public func withRegion<R>(_ key: RegionKey, _ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        guard let r = regions.lookup(key.rawValue) else { throw PlexusError(.noSuchRegion, "no region with \(key)") }
        return try body(UnsafeMutableRawBufferPointer(start: r.memory.base, count: r.size))
    }
}
