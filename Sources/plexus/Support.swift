import ArgumentParser
import Foundation
import PlexusCore

extension Fabric: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument.lowercased() {
        case "a": self = .a
        case "b": self = .b
        default: return nil
        }
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ s: String) { description = s }
}

/// `--fault FABRIC:PLAN`, e.g. `a:drop=5,dup=1,seed=7` or `b:down`.
struct FaultOption: ExpressibleByArgument, Sendable {
    var fabric: Fabric
    var plan: FaultPlan

    init?(argument: String) {
        let parts = argument.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let f = Fabric(argument: parts[0]),
              let plan = try? FaultPlan(parsing: parts[1]) else { return nil }
        fabric = f
        self.plan = plan
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// Checks every --fault value, so that a bad plan gets the parser's own message.
func validateFaults(_ raw: [String]) throws {
    for r in raw {
        let parts = r.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, Fabric(argument: parts[0]) != nil else {
            throw ValidationError("--fault '\(r)': expected FABRIC:PLAN, e.g. a:drop=5,seed=7")
        }
        do { _ = try FaultPlan(parsing: parts[1]) } catch { throw ValidationError("--fault: \(error)") }
    }
}
