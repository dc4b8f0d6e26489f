import GRDB

extension PlatformStore {
    public func createPAN(_ name: String) throws -> PAN {
        try Check.name(name)
        return try db.write { db in
            if try Self.panExists(db, name) { throw PlatformError(.conflict, field: "name", "PAN \(name) exists") }
            try db.execute(sql: "INSERT INTO pans(name, createdMs) VALUES (?, ?)", arguments: [name, Self.nowMs()])
            try Self.log(db, "pan-created", "pan \(name)", "")
            return try Self.pan(db, name)!
        }
    }

    /// Deletes a PAN: its personalities go (their processors return to the free pool, their MACs
    /// are never handed out again) and its VLANs with them.
    public func deletePAN(_ name: String) throws {
        try db.write { db in
            guard try Self.panExists(db, name) else { throw PlatformError(.notFound, field: "name", "no PAN \(name)") }
            let members = try String.fetchAll(db, sql: "SELECT name FROM personalities WHERE pan = ?", arguments: [name])
            for m in members { try Self.release(db, m) }
            try db.execute(sql: "DELETE FROM pans WHERE name = ?", arguments: [name])
            try Self.log(db, "pan-deleted", "pan \(name)", members.isEmpty ? "" : "released \(members.joined(separator: ", "))")
        }
    }

    public func pans() throws -> [PAN] {
        try db.read { db in try String.fetchAll(db, sql: "SELECT name FROM pans ORDER BY name").map { try Self.pan(db, $0)! } }
    }

    public func pan(_ name: String) throws -> PAN {
        try db.read { db in
            guard let p = try Self.pan(db, name) else { throw PlatformError(.notFound, field: "pan", "no PAN \(name)") }
            return p
        }
    }

    /// Gives a PAN a VLAN (a broadcast domain; VLAN numbers are platform-wide, so no two PANs
    /// share one: isolation between PANs holds by construction).
    public func addVLAN(_ vlan: Int, to pan: String) throws -> PAN {
        _ = try Check.vlan(vlan)
        return try db.write { db in
            guard try Self.panExists(db, pan) else { throw PlatformError(.notFound, field: "pan", "no PAN \(pan)") }
            if let owner = try String.fetchOne(db, sql: "SELECT pan FROM vlans WHERE vlan = ?", arguments: [vlan]) {
                throw PlatformError(.conflict, field: "vlan", "VLAN \(vlan) belongs to PAN \(owner)")
            }
            try db.execute(sql: "INSERT INTO vlans(vlan, pan) VALUES (?, ?)", arguments: [vlan, pan])
            try Self.log(db, "vlan-added", "pan \(pan)", "VLAN \(vlan)")
            return try Self.pan(db, pan)!
        }
    }

    public func removeVLAN(_ vlan: Int, from pan: String) throws -> PAN {
        _ = try Check.vlan(vlan)
        return try db.write { db in
            guard try String.fetchOne(db, sql: "SELECT pan FROM vlans WHERE vlan = ?", arguments: [vlan]) == pan else {
                throw PlatformError(.notFound, field: "vlan", "PAN \(pan) has no VLAN \(vlan)")
            }
            let users = try String.fetchAll(db, sql: "SELECT personality FROM nics WHERE vlan = ? ORDER BY personality", arguments: [vlan])
            if !users.isEmpty {
                throw PlatformError(.conflict, field: "vlan", "VLAN \(vlan) still has NICs of \(users.joined(separator: ", ")); detach them first")
            }
            try db.execute(sql: "DELETE FROM vlans WHERE vlan = ?", arguments: [vlan])
            try Self.log(db, "vlan-removed", "pan \(pan)", "VLAN \(vlan)")
            return try Self.pan(db, pan)!
        }
    }
}
