import PlexusCore
import PlexusRCLAN
import PlexusStorage

/// The storage RVIs between a processor's engine and a control node's, on loopback, for tests
/// and benchmarks that put a storage target and a host adapter on engines of their own (the
/// nodes do the same by ``PlexusLAN/VINumbering``).
public enum StorageLink {
    /// Opens the command and data RVIs between `processor` and `control` (VIs `processorVI`,
    /// +1 and `controlVI`, +1, both fabrics), serves the processor at `target` with `map`, and
    /// hosts `adapter` on the processor with its RVIs set (its region is attached later). The
    /// target and adapter are engine-thread objects of those engines.
    public static func connect(processor: EngineThread, control: EngineThread, target: StorageTarget, map: [StorageMapping],
                               adapter: HostAdapter, processorVI: UInt32, controlVI: UInt32) throws {
        let owned = Owned(target: target, adapter: adapter)
        @Sendable func path(_ to: EngineThread, local: UInt32, remote: UInt32) -> RVIPath {
            RVIPath(localA: local, localB: local, peerA: RVIPair.address(to, .a), peerB: RVIPair.address(to, .b),
                    remoteA: remote, remoteB: remote)
        }
        try control.runAndWait { e in
            let layer = RCLAN.on(e)!
            let cmd = try layer.open(path(processor, local: controlVI, remote: processorVI))
            let data = try layer.open(path(processor, local: controlVI + 1, remote: processorVI + 1))
            try owned.target.addProcessor(command: cmd, data: data, map: map, layer: layer)
        }
        try processor.runAndWait { e in
            let layer = RCLAN.on(e)!
            layer.host(owned.adapter)
            let cmd = try layer.open(path(control, local: processorVI, remote: controlVI), service: owned.adapter)
            let data = try layer.open(path(control, local: processorVI + 1, remote: controlVI + 1), service: owned.adapter)
            owned.adapter.setRVIs(command: cmd, data: data)
        }
    }

    /// Carries the two engine-thread objects into the closures that run on their engines.
    struct Owned: @unchecked Sendable {
        let target: StorageTarget
        let adapter: HostAdapter
    }
}
