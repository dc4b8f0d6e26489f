import PlexusCore

/// Which kind of node, for errors and logs: a control node (with its index, 0 or 1) or a
/// processing node ("Network Architecture").
public enum NodeRole: Sendable, Hashable, CustomStringConvertible {
    case control(index: Int)
    case processing

    public var description: String {
        switch self {
        case .control(let k): "control node (index \(k))"
        case .processing: "processing node"
        }
    }
}

/// A node that did not start, and what failed: its configuration, its engine, its RCLAN
/// layer, one of its services (named), its management RVIs, or its registration. When a
/// node's `start` throws it, nothing of the node is left running; when
/// ``ProcessingNode/register(controls:)`` throws it, the node still runs and the caller decides
/// (retry, or ``ProcessingNode/stop()``).
public struct NodeStartError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Step: String, Sendable, Hashable {
        case configuration = "checking its configuration"
        case engine = "starting its engine"
        case layer = "starting its RCLAN layer"
        case service = "starting a service"
        case managementRVIs = "opening its management RVIs"
        case registration = "registering with the control nodes"
    }

    public let node: NodeNumber
    public let role: NodeRole
    public let step: Step
    /// The service that failed (``Step/service``), by name.
    public let service: String?
    /// The underlying error's code, when it was a ``PlexusError``.
    public let code: PlexusError.Code?
    /// What the underlying error said.
    public let reason: String

    public init(node: NodeNumber, role: NodeRole, step: Step, service: String? = nil, _ error: any Error) {
        self.node = node
        self.role = role
        self.step = step
        self.service = service
        let p = error as? PlexusError
        code = p?.code
        reason = p?.message ?? "\(error)"
    }

    public var description: String {
        let what = switch role {
        case .control(let k): "control node \(node) (index \(k))"
        case .processing: "processing node \(node)"
        }
        return "\(what) did not start: \(step.rawValue)\(service.map { " (\($0))" } ?? "") failed: \(reason)"
    }
}
