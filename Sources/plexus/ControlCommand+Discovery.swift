import Foundation
import Logging
import PlexusCore
import PlexusNode
import PlexusPlatform
import PlexusStorage

extension ControlCommand {
    /// The control node's storage rediscovery, when the definition has a `discovery` field: on
    /// a thread of its own, at start, every `everySeconds`, and (with the platform store) for
    /// each request an administrator records (`plexus storage discover`). With the store the
    /// pool and its events live there; without it the pool is kept in memory, the assigned
    /// storage being the definition's maps.
    static func startRediscovery(_ d: PlatformDefinition, node me: NodeNumber, store: PlatformStore?,
                                 maps: [NodeNumber: [StorageMapping]], logLevel: Logger.Level) -> StorageRediscovery? {
        // A field that names nothing discovers nothing (a run would empty the pool).
        guard let configuration = d.discovery, !configuration.isEmpty else { return nil }
        let r: StorageRediscovery
        if let store {
            r = StorageRediscovery(configuration: configuration, node: me, level: logLevel, claim: {
                try store.hasClaimableDiscoveryRequest() ? try store.claimDiscoveryRequest(by: "node \(me)") : nil
            }, apply: { result, request in
                try store.applyDiscovery(result, controlNode: "node \(me)", request: request).notes
            })
        } else {
            r = StorageRediscovery(configuration: configuration, node: me, level: logLevel,
                                   apply: StorageRediscovery.inMemory(node: me, maps: { maps }))
        }
        r.start()
        return r
    }
}
