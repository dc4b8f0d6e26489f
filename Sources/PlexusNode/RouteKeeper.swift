import Dispatch
import PlexusCluster
import PlexusCore
import PlexusNamespaces
import Synchronization

/// Keeps a node's host routes to the adapters of nodes on other subnets, through the gateways
/// the address table names (seed 003: the table carries, for nodes behind routers, "routing
/// directions indicating which router … should be used"; ``PlexusCluster/NodeEntry/routes(to:)``
/// says which).
///
/// The node's address book calls ``learn(_:)`` on its engine thread with each entry it takes;
/// the routes are set with `ip route replace <peer>/32 via <gateway>` in the node's network
/// namespace, off the engine thread, in the order they were learnt. ``stop()`` deletes every
/// route the keeper set. Needs `CAP_NET_ADMIN` there; a route the kernel refuses is counted and
/// its reason kept in ``failures``.
public final class RouteKeeper: Sendable {
    /// The node's own entry: its subnets and gateways.
    public let own: NodeEntry
    /// The network namespace the node's engine runs in (nil: this process's).
    public let namespace: String?
    private let queue = DispatchQueue(label: "plexus.routes")
    private struct State {
        var installed: [UInt32: UInt32] = [:]
        var failures: [String] = []
        var stopped = false
    }
    private let state = Mutex(State())

    public init(own: NodeEntry, namespace: String?) {
        self.own = own
        self.namespace = namespace
    }

    /// The routes set now: peer address → gateway (IPv4, host order).
    public var installed: [UInt32: UInt32] { state.withLock { $0.installed } }
    /// Routes the kernel refused, with its reason.
    public var failures: [String] { state.withLock { $0.failures } }

    /// Sets the routes `entry` needs (from any thread; the work is queued).
    public func learn(_ entry: NodeEntry) {
        guard entry.node != own.node else { return }
        let wanted = own.routes(to: entry)
        guard !wanted.isEmpty else { return }
        queue.async { [self] in
            for r in wanted {
                let have = state.withLock { s -> Bool in s.stopped || s.installed[r.destination] == r.gateway }
                if have { continue }
                let result = NamespaceFabric.execute(command(["route", "replace", "\(Self.dotted(r.destination))/32",
                                                              "via", Self.dotted(r.gateway)]))
                state.withLock { s in
                    if result.status == 0 {
                        s.installed[r.destination] = r.gateway
                    } else if s.failures.count < 100 {
                        s.failures.append("route to \(Self.dotted(r.destination)) via \(Self.dotted(r.gateway)): \(result.output)")
                    }
                }
            }
        }
    }

    /// Waits for the queued work, then deletes every route this keeper set.
    public func stop() {
        queue.sync {
            let routes = state.withLock { s -> [UInt32: UInt32] in
                s.stopped = true
                defer { s.installed = [:] }
                return s.installed
            }
            for (destination, gateway) in routes {
                _ = NamespaceFabric.execute(command(["route", "del", "\(Self.dotted(destination))/32", "via", Self.dotted(gateway)]))
            }
        }
    }

    private func command(_ args: [String]) -> [String] {
        guard let namespace else { return ["ip"] + args }
        // A name under /var/run/netns, or a path (which `ip -n` does not take).
        return namespace.contains("/") ? ["nsenter", "--net=\(namespace)", "ip"] + args : ["ip", "-n", namespace] + args
    }

    static func dotted(_ ip: UInt32) -> String { "\(ip >> 24).\(ip >> 16 & 0xff).\(ip >> 8 & 0xff).\(ip & 0xff)" }
}
