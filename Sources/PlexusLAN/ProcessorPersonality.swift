import PlexusCore

/// What makes a processor that processor on its virtual LANs, and moves with it on failover:
/// its virtual NICs (each a MAC on a VLAN), the IPv4 addresses on them, and its workload.
///
/// The specification ("Management logic" and "Cluster Management Logic"): "each of the PANs and
/// each of the processors will have a personality defined by its virtual networking (including
/// a virtual MAC address) and virtual storage", and on a processor's failure the cluster
/// management logic causes "the storage and networking personalities of a given processor to
/// 'migrate' to a new processor"; claims 1–6 of seed 001 make the whole personality, not a NIC,
/// what fails over. This is the networking part and the workload, as the virtual LAN server
/// holds it (``LANPlan/personalities``), sends it to the node that holds it
/// (``NodeConfiguration/personality``) and moves it (``FailoverRecord/personality``). The
/// storage correspondence is kept with the rest of a personality by the platform store
/// (`PlexusPlatform.Personality`), which nothing in the LAN layer serves.
///
/// Each NIC names the node that holds it (``VirtualNICBinding/node``): a personality moved to
/// another node is ``held(by:)`` that node.
public struct ProcessorPersonality: Sendable, Hashable {
    /// The virtual NICs: MAC and VLAN, and whether each may listen promiscuously.
    public var nics: [VirtualNICBinding]
    /// The IPv4 addresses the NICs carry (a spare that takes the personality over puts the
    /// same addresses on the same MACs).
    public var addresses: [AddressBinding]
    /// The command the node runs in its network namespace, if any.
    public var workload: String?

    public init(nics: [VirtualNICBinding] = [], addresses: [AddressBinding] = [], workload: String? = nil) {
        self.nics = nics
        self.addresses = addresses
        self.workload = workload
    }

    /// Whether it has NICs: only then is a node holding it on a VLAN, and given a
    /// configuration (a personality of addresses or a workload alone gives none).
    public var hasNICs: Bool { !nics.isEmpty }

    /// The same personality held by `node`: every NIC names it.
    public func held(by node: NodeNumber) -> ProcessorPersonality {
        var p = self
        for i in p.nics.indices { p.nics[i].node = node }
        return p
    }
}
