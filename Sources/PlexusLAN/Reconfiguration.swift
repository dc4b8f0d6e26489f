import Glibc
import PlexusCore
import PlexusRCLAN

// Changing a running platform ("Management logic", "Cluster Management Logic" of seed 004): the
// administrator's definition changes (a NIC attached, an address bound, a workload set, a
// personality migrated by hand or removed, a processor added to the pool or returned to it) and
// the control nodes carry the change into the running virtual LANs without stopping anything.
//
// The definition comes as a new ``LANPlan`` of a higher ``LANPlan/revision``. Each control node
// adopts it alone (``VirtualLANServer/adopt(_:layer:)``): it brings its switching table in line
// (attach, detach, move: the NICs that stay keep their multicast groups, listeners and ARP
// bindings), opens management RVIs to nodes it did not know, and sends every node whose
// configuration changed its new configuration, of the new revision. Both control nodes send the
// same configuration; the node applies the first and ignores the second (same revision). A node
// applies a change in place (``VirtualEthernet``): NICs and their TAP devices come and go, direct
// RVIs open to new peers and close to peers that left, and the embedding program is told
// (``VirtualEthernet/onReconfigured``) to change addresses and workload. A configuration with no
// NICs releases the node to the free pool: it drops its personality and waits as a spare.

/// What a running control node did with a plan it was offered.
public enum PlanAdoption: Sendable, Hashable, CustomStringConvertible {
    /// Adopted: these nodes were sent a new configuration (or released).
    case adopted(reconfigured: [NodeNumber])
    /// Not newer than the plan it runs: nothing to do.
    case stale
    /// Not now: the plan does not yet know of a failover this control node carried out (it
    /// would give the failed node its personality back). Offer the next revision, written
    /// after the failover, again.
    case deferred(String)
    /// Never: the plan cannot be switched (a MAC on two NICs), or this server runs no plan.
    case refused(String)

    public var description: String {
        switch self {
        case .adopted(let nodes): nodes.isEmpty ? "adopted (no node changed)" : "adopted: nodes \(nodes.map(String.init).joined(separator: ", ")) reconfigured"
        case .stale: "stale (not newer than the running plan)"
        case .deferred(let why): "deferred: \(why)"
        case .refused(let why): "refused: \(why)"
        }
    }
}

extension VirtualLANServer {
    /// Adopts `new`, a later revision of the plan this control node runs, while it runs: see
    /// the top of this file. Call on the server's engine thread.
    public func adopt(_ new: LANPlan, layer: RCLAN) -> PlanAdoption {
        guard let old = plan else { return .refused("this server runs no plan") }
        guard new.revision > old.revision else { return .stale }
        do {
            _ = try new.table()
        } catch {
            return .refused(error.message)
        }
        // A failover this control node carried out that the plan does not know yet: the plan
        // still gives the failed node the personality that moved.
        let placed = Dictionary(new.nics.map { ($0.mac, $0.node) }, uniquingKeysWith: { a, _ in a })
        for i in failovers.indices where !failovers[i].acknowledged {
            if failovers[i].personality.nics.contains(where: { placed[$0.mac] == failovers[i].failed }) {
                return .deferred("it gives node \(failovers[i].failed) back the personality that moved to node \(failovers[i].spare) (a failover not yet in the administrator's definition)")
            }
            failovers[i].acknowledged = true
        }
        // Nodes the control node did not know: their management RVIs, so that they register.
        for n in new.nodes where nodeRVI[n.node] == nil {
            let path = RVIPath(localA: VINumbering.managementAtControl(node: n.node),
                               localB: VINumbering.managementAtControl(node: n.node),
                               peerA: n.fabricA, peerB: n.fabricB,
                               remoteA: VINumbering.managementAtNode(control: controlIndex),
                               remoteB: VINumbering.managementAtNode(control: controlIndex))
            do {
                let rvi = try layer.open(path, service: self)
                attachNode(n.node, rvi: rvi)
                log.append("node \(n.node) added to the platform")
                do { try onNodeAdded?(n, rvi, layer) } catch {
                    log.append("node \(n.node) added, but what its host keeps per node did not open: \(error)")
                }
            } catch {
                log.append("node \(n.node) added, but no management RVI opens to it: \(error)")
            }
        }
        // The table: NICs that left, NICs that came, NICs that moved to another node.
        let before = Dictionary(old.nics.map { ($0.mac, $0) }, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(new.nics.map { ($0.mac, $0) }, uniquingKeysWith: { a, _ in a })
        var stoppedListening: [VirtualNICBinding] = []
        for (mac, nic) in before {
            guard let now = after[mac], now.vlan == nic.vlan else {
                if table.promiscuous[nic.vlan]?.contains(mac) == true { stoppedListening.append(nic) }
                table.detach(mac)
                continue
            }
            if now.node != nic.node { table.move(mac, to: now.node) }
            // Permission to listen changes in place (groups and bindings stay); a listener
            // whose permission is withdrawn stops.
            if now.promiscuousAllowed != nic.promiscuousAllowed && table.setPromiscuousAllowed(mac, now.promiscuousAllowed) {
                stoppedListening.append(now)
            }
        }
        for (mac, nic) in after where table.nics[mac] == nil { try? table.attach(nic) }  // cannot fail: checked above
        // The other members of a VLAN stop cloning frames to a NIC that no longer listens.
        for l in stoppedListening {
            log.append("\(l.mac) on \(l.vlan) no longer listens promiscuously (plan revision \(new.revision))")
            let note = ControlMessage.listener(node: l.node, vlan: l.vlan, mac: l.mac, on: false).encoded()
            for n in Set(old.nics.filter { $0.vlan == l.vlan }.map(\.node)).union(new.nics.filter { $0.vlan == l.vlan }.map(\.node)) {
                if let r = nodeRVI[n] { _ = try? layer.send(note, on: r) }
            }
        }
        // A failed process or a stranded failure of a node that holds nothing now (its
        // personality was migrated away or removed) is no longer anybody's to move.
        let holders = Set(new.nics.map(\.node))
        processFailures = processFailures.filter { holders.contains($0.key) }
        stranded = stranded.filter { holders.contains($0) }
        // Fenced nodes that the definition holds as free or assigned again: the administrator
        // returned them to the pool.
        let assigned = Set(new.nics.map(\.node))
        var returned: [NodeNumber] = []
        for n in fenced.sorted() where new.spares.contains(n) || assigned.contains(n) {
            fenced.remove(n)
            returned.append(n)
            log.append("node \(n) returned to the free pool")
        }
        // Nodes that left the plan: their management RVIs close.
        let kept = Set(new.nodes.map(\.node))
        for n in old.nodes.map(\.node) where !kept.contains(n) {
            if let r = nodeRVI.removeValue(forKey: n) {
                nodeOf[r] = nil
                layer.close(r)
            }
            standby.remove(n)
            silentSince[n] = nil
            log.append("node \(n) removed from the platform")
        }
        plan = new
        // A returned node that still runs waits as a spare again (it is told so: a fenced node
        // takes nothing else), then takes whatever the plan gives it.
        for n in returned {
            guard let r = nodeRVI[n] else { continue }
            _ = try? layer.send(ControlMessage.standby(node: n).encoded(), on: r)
            if new.waitsAsSpare(n) && silentSince[n] == nil { standby.insert(n) }
        }
        // Each node whose configuration changed is told.
        var told: [NodeNumber] = []
        let everyone = Set(old.nodes.map(\.node)).union(new.nodes.map(\.node))
        for n in everyone.sorted() where !fenced.contains(n) {
            guard let rvi = nodeRVI[n] else { continue }
            let was = try? old.configuration(for: n).get()
            switch new.configuration(for: n) {
            case .success(let c):
                if let was, was.sameSetUp(as: c) { continue }
                _ = try? layer.send(ControlMessage.configuration(c).encoded(), on: rvi)
                announceListeners(to: n, vlans: Set(c.personality.nics.map(\.vlan)), on: rvi, layer: layer)
                standby.remove(n)
                stranded.remove(n)
                log.append("node \(n) reconfigured (plan revision \(new.revision)): "
                           + c.personality.nics.map { "\($0.mac) on \($0.vlan)" }.joined(separator: ", "))
            case .failure:
                guard was != nil else { continue }
                let release = NodeConfiguration(node: n, mtu: new.mtu, nics: [], peers: [], revision: new.revision)
                _ = try? layer.send(ControlMessage.configuration(release).encoded(), on: rvi)
                if new.waitsAsSpare(n) && silentSince[n] == nil { standby.insert(n) }
                log.append("node \(n) released to the free pool (plan revision \(new.revision))")
            }
            told.append(n)
        }
        log.append("plan revision \(new.revision) adopted: \(new.nics.count) NICs, \(new.spares.count) spares"
                   + (told.isEmpty ? "" : "; nodes \(told.map(String.init).joined(separator: ", ")) told"))
        return .adopted(reconfigured: told)
    }
}

extension VirtualEthernet {
    /// Gives this node NIC `nic` (and, with the TAP backend, its TAP device with the NIC's MAC).
    func addNIC(_ nic: VirtualNICBinding, mtu: Int, layer: RCLAN) throws {
        addNIC(nic.mac, vlan: nic.vlan)
        guard tapBackend else { return }
        do {
            let name = try attachTAP(named: TAP.interface(vlan: nic.vlan), to: nic.mac, layer: layer)
            try TAP.configure(name, mac: nic.mac, mtu: mtu)
            interfaces[nic.mac] = name
        } catch {
            removeNIC(nic.mac, layer: layer)  // and its TAP device, if it was opened
            throw error
        }
    }

    /// Removes NIC `mac` (its TAP device closes: the kernel drops the interface and its
    /// addresses).
    func removeNIC(_ mac: MACAddress, layer: RCLAN) {
        nics[mac] = nil
        if let handle = taps.removeValue(forKey: mac) {
            layer.detachDevice(handle)
            nicOfTap[handle] = nil
        }
        interfaces[mac] = nil
        memberships[mac] = nil
        promiscuousNICs.remove(mac)
    }

    /// Opens (or keeps) the direct RVI to peer `p` and maps its MACs to it.
    func openPeer(_ p: NodeConfiguration.Peer, layer: RCLAN) throws {
        let rvi: RVI
        if let have = peerRVI[p.address.node] {
            rvi = have
        } else {
            // The peer's entry in the node's address book (every adapter, primary first, and
            // their MTU) when it has one; else the address the configuration carries.
            let path: RVIPath
            if let fromBook = addressBook?(p.address.node, p.localVI, p.remoteVI) {
                path = fromBook
                peersFromAddressBook += 1
            } else {
                path = RVIPath(localA: p.localVI, localB: p.localVI, peerA: p.address.fabricA, peerB: p.address.fabricB,
                               remoteA: p.remoteVI, remoteB: p.remoteVI)
            }
            rvi = try layer.open(path, service: self, liveness: .onDemand)
            peerRVI[p.address.node] = rvi
            onDirectRVIOpened?(p.address.node, rvi, p.localVI, p.remoteVI)
        }
        for m in p.macs { addDirectPath(to: m, rvi: rvi) }
    }

    /// Drops the whole personality: direct RVIs, NICs and TAP devices.
    func dropPersonality(layer: RCLAN) {
        for (_, rvi) in peerRVI { layer.close(rvi) }
        peerRVI = [:]
        direct = [:]
        unusable = unusable.filter { servers.contains($0) }
        for mac in Array(nics.keys) { removeNIC(mac, layer: layer) }
        tapsToCreate = []
        listeners = [:]
    }

    /// Applies a configuration of a higher revision while the node runs: see the top of this
    /// file.
    func reconfigure(to c: NodeConfiguration, layer: RCLAN) {
        guard let old = configuration else { return }
        if c.personality.nics.isEmpty {
            dropPersonality(layer: layer)
            configuration = nil
            releasedAt = c.revision
            registration = .standby
            tookOver = false
            events.append("released to the free pool (plan revision \(c.revision)): its NICs are gone; it waits as a spare")
            onReconfigured?(old, nil)
            return
        }
        configuration = c
        // NICs: those that left (or changed VLAN) go first, so that a TAP name is free again.
        let wanted = Dictionary(c.personality.nics.map { ($0.mac, $0) }, uniquingKeysWith: { a, _ in a })
        for (mac, vlan) in nics where wanted[mac]?.vlan != vlan { removeNIC(mac, layer: layer) }
        tapsToCreate.removeAll { wanted[$0.mac] == nil }
        for nic in c.personality.nics where nics[nic.mac] == nil && !tapsToCreate.contains(where: { $0.mac == nic.mac }) {
            do {
                try addNIC(nic, mtu: c.mtu, layer: layer)
            } catch {
                // Most likely the device it replaces is still closing: tried again next turns.
                tapsToCreate.append(nic)
                tapRetryDeadline = .now + .seconds(2)
            }
        }
        // Peers: direct RVIs to nodes that no longer share a VLAN close; new ones open; every
        // MAC maps to the node the plan says holds it now.
        let peers = Set(c.peers.map(\.address.node))
        for (n, rvi) in peerRVI where !peers.contains(n) {
            layer.close(rvi)
            unusable.remove(rvi)
            peerRVI[n] = nil
        }
        direct = [:]
        for p in c.peers {
            do {
                try openPeer(p, layer: layer)
            } catch {
                events.append("could not open a direct RVI to node \(p.address.node): \(error)")
            }
        }
        // A NIC that asked to listen promiscuously and has just been allowed to asks again.
        let allowedBefore = Set(old.personality.nics.filter(\.promiscuousAllowed).map(\.mac))
        for nic in c.personality.nics where nic.promiscuousAllowed && !allowedBefore.contains(nic.mac) && promiscuousNICs.contains(nic.mac) {
            toServers(.promiscuous(node: node, nic: nic.mac, on: true), layer: layer)
        }
        events.append("reconfigured (plan revision \(c.revision)): " + c.personality.nics.map { "\($0.mac) on \($0.vlan)" }.joined(separator: ", "))
        // What the embedding program last heard of (a change still waiting for its TAP devices
        // was not told yet).
        let told = pendingReconfiguration ?? old
        if tapsToCreate.isEmpty {
            pendingReconfiguration = nil
            onReconfigured?(told, c)
        } else {
            pendingReconfiguration = told
        }
    }

    /// Creates the TAP devices that could not be created when the change came; once all exist,
    /// the embedding program is told of the change.
    func retryTAPs(layer: RCLAN) {
        guard let c = configuration else {
            tapsToCreate = []
            return
        }
        var still: [VirtualNICBinding] = []
        for nic in tapsToCreate {
            do {
                try addNIC(nic, mtu: c.mtu, layer: layer)
            } catch {
                still.append(nic)
            }
        }
        if !still.isEmpty, let deadline = tapRetryDeadline, ContinuousClock.now > deadline {
            for nic in still {
                registrationErrors.append("no TAP device for \(nic.mac) on \(nic.vlan) within 2 s")
                events.append("reconfiguration: no TAP device for \(nic.mac) on \(nic.vlan) within 2 s; the NIC is left out")
            }
            still = []
        }
        tapsToCreate = still
        if still.isEmpty, let old = pendingReconfiguration {
            pendingReconfiguration = nil
            onReconfigured?(old, c)
        }
    }
}
