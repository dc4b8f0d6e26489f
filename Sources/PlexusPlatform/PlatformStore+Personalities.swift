import GRDB
import PlexusCore
import PlexusStorage
import PlexusLAN

extension PlatformStore {
    /// Adds a processor from the free pool to a PAN, with a new personality `name` (default
    /// `<pan>-<node>`). `node` picks a particular free processor; else the lowest free one.
    public func addProcessor(to pan: String, name: String? = nil, node: NodeNumber? = nil) throws -> Personality {
        if let name { try Check.name(name) }
        if let node { try Check.node(node) }
        return try db.write { db in
            guard try Self.panExists(db, pan) else { throw PlatformError(.notFound, field: "pan", "no PAN \(pan)") }
            let chosen = try Self.takeSpare(db, preferring: node)
            let personality = name ?? "\(pan)-\(chosen)"
            if try Self.personalityExists(db, personality) {
                throw PlatformError(.conflict, field: "name", "personality \(personality) exists")
            }
            try db.execute(sql: "INSERT INTO personalities(name, pan, node) VALUES (?, ?, ?)", arguments: [personality, pan, chosen])
            try db.execute(sql: "UPDATE processors SET state = 'assigned', personality = ? WHERE node = ?", arguments: [personality, chosen])
            try Self.log(db, "processor-assigned", "personality \(personality)", "node \(chosen) in PAN \(pan)")
            return try Self.personality(db, personality)!
        }
    }

    /// Removes a personality; its processor returns to the free pool. Its MACs are not handed
    /// out again.
    public func removePersonality(_ name: String) throws {
        try db.write { db in
            guard try Self.personalityExists(db, name) else { throw PlatformError(.notFound, field: "personality", "no personality \(name)") }
            try Self.release(db, name)
            try Self.log(db, "personality-removed", "personality \(name)", "")
        }
    }

    /// Attaches a new virtual NIC on `vlan` (a VLAN of the personality's PAN) with a MAC that has
    /// never been handed out (serial and persistent counter, like ``MACAllocator``).
    public func attachNIC(_ name: String, vlan: Int, promiscuousAllowed: Bool = false) throws -> Personality {
        _ = try Check.vlan(vlan)
        return try db.write { db in
            let p = try Self.requirePersonality(db, name)
            guard try String.fetchOne(db, sql: "SELECT pan FROM vlans WHERE vlan = ?", arguments: [vlan]) == p.pan else {
                throw PlatformError(.invalid, field: "vlan", "VLAN \(vlan) is not a VLAN of PAN \(p.pan)")
            }
            if p.nics.contains(where: { $0.vlan == vlan }) {
                throw PlatformError(.conflict, field: "vlan", "\(name) already has a NIC on VLAN \(vlan)")
            }
            let mac = try Self.allocateMAC(db)
            try db.execute(sql: "INSERT INTO nics(mac, personality, vlan, promiscuousAllowed) VALUES (?, ?, ?, ?)",
                           arguments: [mac.description, name, vlan, promiscuousAllowed])
            try Self.log(db, "nic-attached", "personality \(name)", "\(mac) on VLAN \(vlan)")
            return try Self.personality(db, name)!
        }
    }

    public func detachNIC(_ name: String, vlan: Int) throws -> Personality {
        _ = try Check.vlan(vlan)
        return try db.write { db in
            let p = try Self.requirePersonality(db, name)
            guard let nic = p.nics.first(where: { $0.vlan == vlan }) else {
                throw PlatformError(.notFound, field: "vlan", "\(name) has no NIC on VLAN \(vlan)")
            }
            try db.execute(sql: "DELETE FROM ips WHERE personality = ? AND vlan = ?", arguments: [name, vlan])
            try db.execute(sql: "DELETE FROM nics WHERE mac = ?", arguments: [nic.mac.description])
            try Self.log(db, "nic-detached", "personality \(name)", "\(nic.mac) from VLAN \(vlan) (the MAC is retired)")
            return try Self.personality(db, name)!
        }
    }

    /// Binds an IPv4 address (`a.b.c.d/len`) to the personality's NIC on `vlan`. An address is
    /// bound to one NIC per VLAN.
    public func bindIP(_ name: String, vlan: Int, address: String) throws -> Personality {
        _ = try Check.vlan(vlan)
        let (host, prefix) = try Check.cidr(address)
        return try db.write { db in
            let p = try Self.requirePersonality(db, name)
            guard p.nics.contains(where: { $0.vlan == vlan }) else {
                throw PlatformError(.invalid, field: "vlan", "\(name) has no NIC on VLAN \(vlan); attach one first")
            }
            if let owner = try String.fetchOne(db, sql: "SELECT personality FROM ips WHERE vlan = ? AND host = ?",
                                               arguments: [vlan, host.description]) {
                throw PlatformError(.conflict, field: "address", "\(host) is bound to \(owner) on VLAN \(vlan)")
            }
            try db.execute(sql: "INSERT INTO ips(vlan, host, prefix, personality) VALUES (?, ?, ?, ?)",
                           arguments: [vlan, host.description, prefix, name])
            try Self.log(db, "ip-bound", "personality \(name)", "\(host)/\(prefix) on VLAN \(vlan)")
            return try Self.personality(db, name)!
        }
    }

    public func unbindIP(_ name: String, vlan: Int, address: String) throws -> Personality {
        _ = try Check.vlan(vlan)
        let (host, _) = try Check.cidr(address)
        return try db.write { db in
            _ = try Self.requirePersonality(db, name)
            try db.execute(sql: "DELETE FROM ips WHERE personality = ? AND vlan = ? AND host = ?",
                           arguments: [name, vlan, host.description])
            guard db.changesCount > 0 else { throw PlatformError(.notFound, field: "address", "\(host) is not bound to \(name) on VLAN \(vlan)") }
            try Self.log(db, "ip-unbound", "personality \(name)", "\(host) on VLAN \(vlan)")
            return try Self.personality(db, name)!
        }
    }

    /// Maps the personality's virtual (target, LUN) onto a storage address. The same storage may
    /// be mapped read-only by many personalities, but read-write by one only (and then by no
    /// other, read-only or not).
    public func mapStorage(_ name: String, target: Int, lun: Int, storage: String,
                           access: StorageAccess = .readWrite) throws -> Personality {
        try Check.scsi(target, field: "target", limit: 256)
        try Check.scsi(lun, field: "lun", limit: 16384)
        try Check.storage(storage)
        return try db.write { db in
            _ = try Self.requirePersonality(db, name)
            if try Row.fetchOne(db, sql: "SELECT 1 FROM storage WHERE personality = ? AND target = ? AND lun = ?",
                                arguments: [name, target, lun]) != nil {
                throw PlatformError(.conflict, field: "lun", "\(name) already maps target \(target) LUN \(lun)")
            }
            let others = try Row.fetchAll(db, sql: "SELECT personality, access FROM storage WHERE address = ? AND personality != ?",
                                          arguments: [storage, name])
            if let w = others.first(where: { $0["access"] as String == "read-write" }) ?? (access == .readWrite ? others.first : nil) {
                throw PlatformError(.conflict, field: "storage", "\(storage) is mapped by \(w["personality"] as String) (\(w["access"] as String)); "
                                    + "storage is shared read-only or held read-write by one personality")
            }
            try db.execute(sql: "INSERT INTO storage(personality, target, lun, address, access) VALUES (?, ?, ?, ?, ?)",
                           arguments: [name, target, lun, storage, access.rawValue])
            try Self.log(db, "storage-mapped", "personality \(name)", "target \(target) LUN \(lun) → \(storage) (\(access.rawValue))")
            return try Self.personality(db, name)!
        }
    }

    public func unmapStorage(_ name: String, target: Int, lun: Int) throws -> Personality {
        try db.write { db in
            _ = try Self.requirePersonality(db, name)
            try db.execute(sql: "DELETE FROM storage WHERE personality = ? AND target = ? AND lun = ?", arguments: [name, target, lun])
            guard db.changesCount > 0 else { throw PlatformError(.notFound, field: "lun", "\(name) maps no target \(target) LUN \(lun)") }
            try Self.log(db, "storage-unmapped", "personality \(name)", "target \(target) LUN \(lun)")
            return try Self.personality(db, name)!
        }
    }

    /// Sets (or with nil clears) the personality's workload.
    public func setWorkload(_ name: String, command: String?) throws -> Personality {
        if let command { try Check.command(command) }
        return try db.write { db in
            _ = try Self.requirePersonality(db, name)
            try db.execute(sql: "UPDATE personalities SET workload = ? WHERE name = ?", arguments: [command, name])
            try Self.log(db, "workload-set", "personality \(name)", command ?? "(none)")
            return try Self.personality(db, name)!
        }
    }

    public func personality(_ name: String) throws -> Personality {
        try db.read { db in try Self.requirePersonality(db, name) }
    }

    /// The personality processor `node` holds.
    public func personality(node: NodeNumber) throws -> Personality {
        try db.read { db in
            guard let p = try Self.processor(db, node) else { throw PlatformError(.notFound, field: "node", "no node \(node)") }
            guard let name = p.personality else {
                throw PlatformError(.notFound, field: "node", "node \(node) is \(p.state.rawValue) and holds no personality")
            }
            return try Self.personality(db, name)!
        }
    }

    public func personalities() throws -> [Personality] {
        try db.read { db in try String.fetchAll(db, sql: "SELECT name FROM personalities ORDER BY name").map { try Self.personality(db, $0)! } }
    }

    /// The storage map of the whole platform ("Configuration Component"): every personality's
    /// (target, LUN)s with their storage, by PAN and personality.
    public func storageMap() throws -> [StorageAssignment] {
        try db.read { db in try Self.storageMap(db) }
    }

    static func storageMap(_ db: Database) throws -> [StorageAssignment] {
        try Row.fetchAll(db, sql: """
            SELECT p.pan, p.name, p.node, s.target, s.lun, s.address, s.access
            FROM storage s JOIN personalities p ON p.name = s.personality
            ORDER BY p.pan, p.name, s.target, s.lun
            """).map {
            StorageAssignment(pan: $0["pan"], personality: $0["name"], node: $0["node"],
                              mapping: StorageMapping(target: UInt32($0["target"] as Int), lun: UInt32($0["lun"] as Int),
                                                      path: $0["address"], access: StorageAccess(rawValue: $0["access"]) ?? .readOnly))
        }
    }
}
