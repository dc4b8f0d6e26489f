import GRDB
import PlexusCore

extension PlatformStore {
    /// Adds processing nodes to the platform's free pool.
    @discardableResult
    public func addProcessors(_ nodes: [NodeNumber]) throws -> [Processor] {
        guard !nodes.isEmpty else { throw PlatformError(.invalid, field: "nodes", "name at least one node") }
        for n in nodes { try Check.node(n, field: "nodes") }
        guard Set(nodes).count == nodes.count else { throw PlatformError(.invalid, field: "nodes", "a node is named twice") }
        return try db.write { db in
            for n in nodes {
                if try Self.processor(db, n) != nil { throw PlatformError(.conflict, field: "nodes", "node \(n) is already on the platform") }
                try db.execute(sql: "INSERT INTO processors(node, state) VALUES (?, 'free')", arguments: [n])
                try Self.log(db, "processor-added", "node \(n)", "to the free pool")
            }
            return try nodes.map { try Self.processor(db, $0)! }
        }
    }

    /// Takes a free processor off the platform.
    public func removeProcessor(_ node: NodeNumber) throws {
        try db.write { db in
            guard let p = try Self.processor(db, node) else { throw PlatformError(.notFound, field: "node", "no node \(node)") }
            guard p.state == .free else {
                throw PlatformError(.conflict, field: "node", "node \(node) is \(p.state.rawValue); only a free processor can be removed")
            }
            try db.execute(sql: "DELETE FROM processors WHERE node = ?", arguments: [node])
            try Self.log(db, "processor-removed", "node \(node)", "")
        }
    }

    /// Returns a fenced (repaired) processor to the free pool.
    public func returnProcessor(_ node: NodeNumber) throws -> Processor {
        try db.write { db in
            guard let p = try Self.processor(db, node) else { throw PlatformError(.notFound, field: "node", "no node \(node)") }
            guard p.state == .fenced else {
                throw PlatformError(.conflict, field: "node", "node \(node) is \(p.state.rawValue), not fenced")
            }
            try db.execute(sql: "UPDATE processors SET state = 'free', fencedReason = NULL WHERE node = ?", arguments: [node])
            try Self.log(db, "processor-returned", "node \(node)", "back in the free pool")
            return try Self.processor(db, node)!
        }
    }

    public func processors() throws -> [Processor] {
        try db.read { db in try Row.fetchAll(db, sql: "SELECT * FROM processors ORDER BY node").map(Self.processor(row:)) }
    }
}
