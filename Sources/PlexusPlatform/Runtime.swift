import Foundation
import PlexusCore
import PlexusLAN

// The platform store driving a running platform: the store is the administrator's truth (PANs,
// personalities, the free pool), the LAN plan is derived from it, and a failover the control
// nodes carry out is written back to it (the personality moves, the failed processor is fenced,
// the timeline is kept in the event log).

extension PlatformStore {
    /// The definition of the virtual LANs the store describes, for `controlNodes`: every
    /// processor (assigned ones with their personalities' NICs, addresses and workloads; free
    /// ones as spares), and the MACs the store handed out (the plan keeps them).
    public func lanDefinition(controlNodes: [Int]) throws -> (definition: PlatformDefinition, macs: [VirtualNICBinding]) {
        let processors = try processors()
        let personalities = try personalities()
        var vlans: [VLANID: [Int]] = [:]
        var addresses: [Int: [AddressBinding]] = [:]
        var workloads: [Int: String] = [:]
        var promiscuous: [VLANID: Set<Int>] = [:]
        for p in personalities {
            guard let node = p.node else { continue }
            for nic in p.nics {
                guard let v = VLANID(nic.vlan) else { continue }
                vlans[v, default: []].append(node)
                if nic.promiscuousAllowed { promiscuous[v, default: []].insert(node) }
            }
            addresses[node] = p.ips.compactMap { ip in VLANID(ip.vlan).map { AddressBinding(vlan: $0, cidr: ip.address) } }
            if let w = p.workload { workloads[node] = w }
        }
        var d = PlatformDefinition(controlNodes: controlNodes, processingNodes: processors.map(\.node).filter { !controlNodes.contains($0) },
                                   vlans: vlans)
        d.promiscuousAllowed = promiscuous
        d.spares = processors.filter { $0.state == .free }.map(\.node)
        d.addresses = addresses
        d.workloads = workloads
        return (d, try nicBindings())
    }

    /// Writes a failover the control nodes carried out into the store: the failed node's
    /// personality moves to the spare (fencing the failed node), and each step of the timeline
    /// becomes an event (`failover-step`), then `failover` sums it up.
    @discardableResult
    public func recordFailover(_ f: FailoverRecord) throws -> Migration {
        let name = try personality(node: Int(f.failed)).name
        let m = try migrate(name, to: Int(f.spare), fence: true,
                            reason: "failed: silent on both fabrics (detected by the control nodes)")
        for line in f.timeline {
            try record("failover-step", subject: "personality \(name)", detail: "node \(f.failed) → node \(f.spare): \(line)")
        }
        let total = f.milliseconds(to: f.steps.last?.step ?? .detected) ?? 0
        try record("failover", subject: "personality \(name)",
                   detail: String(format: "node %d → spare node %d in %.1f ms after it fell silent: ", f.failed, f.spare, total)
                       + f.timeline.joined(separator: ", "))
        return m
    }
}
