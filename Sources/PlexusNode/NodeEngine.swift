import PlexusCore
import PlexusRCLAN
import Synchronization

/// Builds one of a node's services on its engine thread (services are not `Sendable`: each is
/// made where it runs). `name` says which service failed when building it throws.
public struct NodeServiceFactory: Sendable {
    public let name: String
    public let make: @Sendable () throws -> any RVIDelegate

    public init(_ name: String, _ make: @escaping @Sendable () throws -> any RVIDelegate) {
        self.name = name
        self.make = make
    }
}

/// The start-up both kinds of node share: one engine thread, one RCLAN layer on it, the node's
/// main service as the layer's delegate and the other services hosted beside it. A failure at
/// any step stops what was started and throws a ``NodeStartError`` naming the step.
enum NodeEngine {
    static func start(node: NodeNumber, role: NodeRole, engine: EngineConfiguration, layer: RCLANConfiguration,
                      main: NodeServiceFactory, services: [NodeServiceFactory]) throws(NodeStartError) -> EngineThread {
        do { try layer.validate() } catch { throw NodeStartError(node: node, role: role, step: .configuration, error) }
        let failure = Mutex<NodeStartError?>(nil)
        let thread: EngineThread
        do {
            thread = try EngineThread.start(engine) { () -> any EngineDriver in
                let first: any RVIDelegate
                do { first = try main.make() } catch {
                    failure.withLock { $0 = NodeStartError(node: node, role: role, step: .service, service: main.name, error) }
                    return IdleDriver()
                }
                let rclan: RCLAN
                do { rclan = try RCLAN(configuration: layer, delegate: first) } catch {
                    failure.withLock { $0 = NodeStartError(node: node, role: role, step: .layer, error) }
                    return IdleDriver()
                }
                for s in services {
                    do { rclan.host(try s.make()) } catch {
                        failure.withLock { $0 = NodeStartError(node: node, role: role, step: .service, service: s.name, error) }
                        return IdleDriver()
                    }
                }
                return rclan
            }
        } catch {
            throw NodeStartError(node: node, role: role, step: .engine, error)
        }
        if let e = failure.withLock({ $0 }) {
            thread.stopAndWait()
            throw e
        }
        return thread
    }

    /// Runs `body` with the layer's first service of type `T` on the engine thread.
    static func with<S: RVIDelegate, T: Sendable>(_ thread: EngineThread, _ type: S.Type, what: String,
                                                  _ body: @escaping @Sendable (S, RCLAN) throws -> T) throws -> T {
        try thread.runAndWait { e in
            guard let layer = RCLAN.on(e), let s = layer.service(S.self) else {
                throw PlexusError(.engineStopped, "\(what) is not running")
            }
            return try body(s, layer)
        }
    }
}
