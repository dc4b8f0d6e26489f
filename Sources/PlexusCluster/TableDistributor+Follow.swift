import PlexusCore
import PlexusRCLAN

/// An RVI whose addresses follow the entry of the node at its other end.
struct FollowedRVI {
    var rvi: RVI
    var localVI: UInt32
    var remoteVI: UInt32
    var pathMTU: Int
}

extension TableDistributor {
    /// Keeps `rvi` (open to `node`, on the same VI number on both fabrics) at the addresses of
    /// `node`'s entry in the table: now, if the table has the entry, and whenever a newer one is
    /// taken (``PlexusRCLAN/RCLAN/setPeers(of:from:)``: the primary, the alternates, the MTU).
    /// Called on the engine thread.
    public func follow(_ rvi: RVI, node: NodeNumber, localVI: UInt32, remoteVI: UInt32, pathMTU: Int = 65536, layer: RCLAN) {
        followed[node, default: []].append(FollowedRVI(rvi: rvi, localVI: localVI, remoteVI: remoteVI, pathMTU: pathMTU))
        refollow(node, layer: layer)
    }

    /// RVIs given new addresses from the table so far.
    public var rvisRedirected: UInt64 { redirected }

    /// Gives every RVI that follows `node` the path of its entry, where that differs from the
    /// path it has; forgets RVIs that are closed.
    func refollow(_ node: NodeNumber, layer: RCLAN) {
        guard var list = followed[node] else { return }
        list.removeAll { layer.path(of: $0.rvi) == nil }
        followed[node] = list.isEmpty ? nil : list
        for f in list {
            guard let want = table.path(to: node, localVI: f.localVI, remoteVI: f.remoteVI, pathMTU: f.pathMTU),
                  let have = layer.path(of: f.rvi), want != have
            else { continue }
            if (try? layer.setPeers(of: f.rvi, from: want)) != nil { redirected &+= 1 }
        }
    }
}
