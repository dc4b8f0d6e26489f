import Foundation
import PlexusCore
import PlexusLAN
import PlexusRCLAN

// A running platform takes a new revision of its definition (VirtualLANServer.adopt does the
// switching side; this is the platform's side: the plan a definition gives, and LANPlatform.adopt).

extension PlatformDefinition {
    /// The plan for this definition, with the fabric addresses its templates give (the
    /// processes' form, `plexus control`) and the NICs `nics` (MACs resolved).
    public func plan(nics: [VirtualNICBinding]) throws(PlexusError) -> LANPlan {
        var nodes: [NodeAddress] = []
        for n in processingNodes { nodes.append(try PlanStore.address(self, n)) }
        var plan = LANPlan(controls: try controlAddresses(), nodes: nodes, nics: nics, mtu: mtu)
        apply(to: &plan)
        return plan
    }

    /// The NICs of this definition with the MACs of `known` (the platform store's), any other
    /// with a new MAC from `allocator`.
    public func nics(known: [VirtualNICBinding], allocator: MACAllocator) throws(PlexusError) -> [VirtualNICBinding] {
        var byKey: [NICKey: MACAddress] = [:]
        for b in known { byKey[NICKey(node: b.node, vlan: b.vlan)] = b.mac }
        return try nics(allocator: allocator, known: byKey)
    }

    /// This definition restricted to processing nodes `running` (the rest are dropped from its
    /// VLANs, spares, addresses and workloads).
    func restricted(to running: Set<NodeNumber>) -> PlatformDefinition {
        var d = self
        d.processingNodes = processingNodes.filter(running.contains)
        d.vlans = vlans.mapValues { $0.filter(running.contains) }.filter { !$0.value.isEmpty }
        d.promiscuousAllowed = promiscuousAllowed.mapValues { $0.filter(running.contains) }
        d.spares = spares.filter(running.contains)
        d.addresses = addresses.filter { running.contains($0.key) }
        d.workloads = workloads.filter { running.contains($0.key) }
        return d
    }
}

extension LANPlatform {
    /// Offers every running control node `new` (a later revision of the definition; MACs from
    /// `macs`, others from ``macState``) while the platform runs (see the top of this file).
    /// Only the processing nodes this process runs take part; the failover servers stay as
    /// defined at start. Returns what each running control node did.
    public func adopt(_ new: PlatformDefinition, macs: [VirtualNICBinding]) throws -> [PlanAdoption] {
        let running = Set(plan.nodes.map(\.node))
        var d = new.restricted(to: running)
        d.failoverServers = definition.failoverServers
        var next = LANPlan(controls: plan.controls, nodes: plan.nodes,
                           nics: try d.nics(known: macs, allocator: MACAllocator(serial: d.serial, stateFile: macState)), mtu: plan.mtu)
        d.apply(to: &next)
        var results: [PlanAdoption] = []
        for case let t? in controls {
            let offered = next
            results.append(try t.runAndWait { e -> PlanAdoption in
                guard let layer = RCLAN.on(e), let server = layer.service(VirtualLANServer.self) else { return .refused("no server") }
                return server.adopt(offered, layer: layer)
            })
        }
        if results.contains(where: { if case .adopted = $0 { true } else { false } }) { plan = next }
        return results
    }

    /// The failovers the running control nodes carried out.
    public func failoverRecords() -> [FailoverRecord] {
        controls.indices.flatMap { k in controls[k] == nil ? [] : failovers(k) }
    }

    /// The failover servers as defined at start.
    public var failoverServers: [FailoverServer] { definition.failoverServers }
}
