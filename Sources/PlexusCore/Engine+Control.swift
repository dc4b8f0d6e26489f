// MARK: - The privileged interface: establishing VIs and registering regions.
//
// Seed, "Virtual LAN Server" and "Giganet Driver": processing nodes cannot create paths; the
// switch manager on the control nodes creates and removes VIs. These methods are `package`:
// the data path (drivers) cannot reach them; the control plane reaches them through
// ``FabricControl``.

extension Engine {
    package func establish(_ vi: VI, peer: FabricAddress, remoteVI: UInt32) throws(PlexusError) {
        try establish(vi, peers: [peer], remoteVI: remoteVI)
    }

    /// Establishes `vi` toward a peer that can be reached at several addresses on the fabric:
    /// `peers[0]` is its primary adapter, the rest its alternates. Sends go to the primary until
    /// ``retarget(_:to:)`` moves them; frames from any of the addresses are the peer's.
    ///
    /// - Parameter mtu: the MTU of the peer's adapters on this fabric, when smaller than the
    ///   engine's path MTU: no datagram to the peer is larger (frames above it are segmented).
    package func establish(_ vi: VI, peers: [FabricAddress], remoteVI: UInt32, mtu: Int? = nil) throws(PlexusError) {
        let port = self.port(vi.fabric)
        guard let e = port.entry(vi.number) else {
            throw PlexusError(.noSuchVI, "\(vi): VI numbers on this port run from 1 to \(port.tableCapacity - 1)")
        }
        guard !e.pointee.established else { throw PlexusError(.viInUse, "\(vi) is already established") }
        guard remoteVI != 0 else { throw PlexusError(.configuration, "remote VI number 0 is never valid") }
        let before = e.pointee
        e.pointee = VIEntry(established: true, remoteVI: remoteVI, posted: 0, counters: VICounters(),
                            generation: before.generation &+ 1)
        do {
            try setPeerAddresses(vi, e, port, peers: peers, mtu: mtu)
        } catch {
            e.pointee = before  // refused: as it was (sends still queued point at its peer)
            throw error
        }
        port.established += 1
    }

    /// Replaces the addresses of an established VI's peer on its fabric (primary first) and its
    /// MTU, as when the peer's entry in the address book changes; sends go to the new primary.
    /// The establishment is the same: its receives, counters and RDMA rights stay.
    package func setPeers(_ vi: VI, peers: [FabricAddress], mtu: Int? = nil) throws(PlexusError) {
        let port = self.port(vi.fabric)
        guard let e = port.entry(vi.number), e.pointee.established else {
            throw PlexusError(.noSuchVI, "\(vi) is not established")
        }
        try setPeerAddresses(vi, e, port, peers: peers, mtu: mtu)
    }

    /// Checks `peers` and `mtu` and gives entry `e` of `vi` its peer's addresses (the set, if more
    /// than one), the primary as the current one, and its largest datagram; nothing changes when
    /// they are refused.
    private func setPeerAddresses(_ vi: VI, _ e: UnsafeMutablePointer<VIEntry>, _ port: Port, peers: [FabricAddress],
                                  mtu: Int?) throws(PlexusError) {
        guard !peers.isEmpty, peers.count <= PeerAddresses.capacity else {
            throw PlexusError(.configuration, "\(vi): a peer has 1 to \(PeerAddresses.capacity) addresses on a fabric, not \(peers.count)")
        }
        for peer in peers where peer.port == 0 || peer.ip == 0 {
            throw PlexusError(.configuration, "peer address \(peer) is not usable")
        }
        var maxDatagram = port.maxDatagram
        if let mtu {
            guard mtu >= FrameLayout.smallestPeerMTU else {
                throw PlexusError(.configuration, "\(vi): a peer MTU of \(mtu) is below the smallest the engine segments for (\(FrameLayout.smallestPeerMTU))")
            }
            maxDatagram = min(maxDatagram, mtu - FrameLayout.ipUDPOverhead)
        }
        if peers.count > 1 {
            let set = port.peerSets[vi.number] ?? PeerAddresses()
            set.set(peers)
            port.peerSets[vi.number] = set
        }
        e.pointee.peer = peers[0].sockaddr
        e.pointee.alternates = peers.count > 1
        e.pointee.maxDatagram = Int32(maxDatagram)
    }

    /// Sends on `vi` go to its peer's address `index` from now on (0: the primary): the frames
    /// queued and not yet taken by the kernel go there too. The reliable layer moves a leg to
    /// an alternate address when the current one stops answering (seed 003, claims 21 and 28).
    package func retarget(_ vi: VI, to index: Int) throws(PlexusError) {
        let port = self.port(vi.fabric)
        guard let e = port.entry(vi.number), e.pointee.established else {
            throw PlexusError(.noSuchVI, "\(vi) is not established")
        }
        guard e.pointee.alternates, let set = port.peerSets[vi.number], index >= 0, index < set.count else {
            guard index == 0 else { throw PlexusError(.configuration, "\(vi) has no peer address \(index)") }
            return
        }
        e.pointee.peer = set.address(index).sockaddr
    }

    /// The addresses `vi`'s peer has on the VI's fabric, primary first, and the one sends go to.
    public func peerAddresses(_ vi: VI) -> (all: [FabricAddress], current: FabricAddress)? {
        let port = self.port(vi.fabric)
        guard let e = port.entry(vi.number), e.pointee.established else { return nil }
        let current = FabricAddress(e.pointee.peer)
        guard e.pointee.alternates, let set = port.peerSets[vi.number] else { return ([current], current) }
        return ((0..<set.count).map { set.address($0) }, current)
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
        try registerRegion(bytes: bytes, shared: nil, writers: writers, permissions: permissions)
    }

    /// Registers `shared` as a region: the engine writes into it (RDMA WRITEs of `writers`'
    /// peers, block I/O) and the thread that shares it reads and writes the slots it owns.
    package func registerRegion(shared: SharedSlots, writers: [VI], permissions: RegionPermissions) throws(PlexusError)
        -> RegionKey
    {
        try registerRegion(bytes: shared.size, shared: shared, writers: writers, permissions: permissions)
    }

    func registerRegion(bytes: Int, shared: SharedSlots?, writers: [VI], permissions: RegionPermissions)
        throws(PlexusError) -> RegionKey
    {
        guard bytes > 0 else { throw PlexusError(.configuration, "a region needs a positive size") }
        // A region without writers is local memory no peer reaches (a storage target's staging
        // buffers for block I/O); one that grants remote writes needs a writer.
        guard !writers.isEmpty || !permissions.contains(.remoteWrite) else {
            throw PlexusError(.configuration, "a region that grants remote writes needs at least one writer VI")
        }
        var granted: [Region.Writer] = []
        for w in writers {
            guard let e = port(w.fabric).entry(w.number), e.pointee.established else {
                throw PlexusError(.noSuchVI, "writer \(w) is not established")
            }
            granted.append(Region.Writer(vi: w, generation: e.pointee.generation))
        }
        return try regions.insert(size: bytes, writers: granted, permissions: permissions,
                                  hugePages: configuration.hugePages, shared: shared)
    }

    package func deregisterRegion(_ key: RegionKey) throws(PlexusError) {
        if let r = regions.lookup(key.rawValue), r.blockIOInFlight > 0 {
            throw PlexusError(.inUse, "\(key) has \(r.blockIOInFlight) block I/O operations in flight")
        }
        guard regions.remove(key) else { throw PlexusError(.noSuchRegion, "no region with \(key)") }
    }

    /// Reads or writes a local region in place.
    public func withRegion<R>(_ key: RegionKey, _ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        guard let r = regions.lookup(key.rawValue) else { throw PlexusError(.noSuchRegion, "no region with \(key)") }
        return try body(UnsafeMutableRawBufferPointer(start: r.memory.base, count: r.size))
    }
}
