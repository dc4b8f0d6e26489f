import Foundation
import GRDB
import PlexusCore
import PlexusStorage
import PlexusLAN

extension PlatformStore {
    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    static func log(_ db: Database, _ kind: String, _ subject: String, _ detail: String) throws {
        try db.execute(sql: "INSERT INTO events(timeMs, kind, subject, detail) VALUES (?, ?, ?, ?)",
                       arguments: [nowMs(), kind, subject, detail])
    }

    static func processor(row r: Row) -> Processor {
        Processor(node: r["node"], state: Processor.State(rawValue: r["state"]) ?? .fenced, personality: r["personality"],
                  fencedReason: r["fencedReason"])
    }

    static func processor(_ db: Database, _ node: NodeNumber) throws -> Processor? {
        try Row.fetchOne(db, sql: "SELECT * FROM processors WHERE node = ?", arguments: [node]).map(processor(row:))
    }

    static func panExists(_ db: Database, _ name: String) throws -> Bool {
        try Row.fetchOne(db, sql: "SELECT 1 FROM pans WHERE name = ?", arguments: [name]) != nil
    }

    static func personalityExists(_ db: Database, _ name: String) throws -> Bool {
        try Row.fetchOne(db, sql: "SELECT 1 FROM personalities WHERE name = ?", arguments: [name]) != nil
    }

    static func pan(_ db: Database, _ name: String) throws -> PAN? {
        guard try panExists(db, name) else { return nil }
        return PAN(name: name,
                   vlans: try Int.fetchAll(db, sql: "SELECT vlan FROM vlans WHERE pan = ? ORDER BY vlan", arguments: [name]),
                   personalities: try String.fetchAll(db, sql: "SELECT name FROM personalities WHERE pan = ? ORDER BY name", arguments: [name]))
    }

    static func requirePersonality(_ db: Database, _ name: String) throws -> Personality {
        guard let p = try personality(db, name) else { throw PlatformError(.notFound, field: "personality", "no personality \(name)") }
        return p
    }

    static func personality(_ db: Database, _ name: String) throws -> Personality? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM personalities WHERE name = ?", arguments: [name]) else { return nil }
        let nics = try Row.fetchAll(db, sql: "SELECT * FROM nics WHERE personality = ? ORDER BY vlan", arguments: [name]).map {
            row throws -> NICRecord in
            let text: String = row["mac"]
            guard let mac = MACAddress(text) else {
                throw PlatformError(.invalid, field: "mac", "the store holds '\(text)' for a NIC of \(name), which is not a MAC address")
            }
            return NICRecord(mac: mac, vlan: row["vlan"], promiscuousAllowed: row["promiscuousAllowed"])
        }
        let ips = try Row.fetchAll(db, sql: "SELECT * FROM ips WHERE personality = ? ORDER BY vlan, host", arguments: [name]).map {
            IPBinding(vlan: $0["vlan"], address: "\($0["host"] as String)/\($0["prefix"] as Int)")
        }
        let storage = try Row.fetchAll(db, sql: "SELECT * FROM storage WHERE personality = ? ORDER BY target, lun", arguments: [name]).map {
            StorageMapping(target: UInt32($0["target"] as Int), lun: UInt32($0["lun"] as Int), path: $0["address"],
                           access: StorageAccess(rawValue: $0["access"]) ?? .readOnly)
        }
        return Personality(name: name, pan: row["pan"], node: row["node"], nics: nics, ips: ips, storage: storage,
                           workload: row["workload"], generation: row["generation"])
    }

    /// A free processor: `preferring` if given (it must be free), else the lowest free one.
    static func takeSpare(_ db: Database, preferring node: NodeNumber?, field: String = "node") throws -> NodeNumber {
        if let node {
            guard let p = try processor(db, node) else { throw PlatformError(.notFound, field: field, "no node \(node)") }
            guard p.state == .free else { throw PlatformError(.conflict, field: field, "node \(node) is \(p.state.rawValue), not free") }
            return node
        }
        guard let n = try NodeNumber.fetchOne(db, sql: "SELECT node FROM processors WHERE state = 'free' ORDER BY node LIMIT 1") else {
            throw PlatformError(.conflict, field: field, "the free pool is empty")
        }
        return n
    }

    /// Removes personality `name` (cascading to its NICs, IPs and storage) and frees its processor.
    static func release(_ db: Database, _ name: String) throws {
        try db.execute(sql: "UPDATE processors SET state = 'free', personality = NULL WHERE personality = ?", arguments: [name])
        try db.execute(sql: "DELETE FROM personalities WHERE name = ?", arguments: [name])
    }

    /// The next MAC: `02:SS:SS:CC:CC:CC` (locally administered, unicast; the control node's
    /// serial and a 24-bit counter), the counter advanced in the same transaction as the NIC.
    static func allocateMAC(_ db: Database) throws -> MACAddress {
        let serial = UInt64(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'serial'").flatMap { UInt16($0) } ?? 1)
        let next = UInt64(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'mac_next'").flatMap { UInt32($0) } ?? 0)
        guard next < UInt64(MACAllocator.limit) else {
            throw PlatformError(.conflict, "control node serial \(serial) has handed out all \(MACAllocator.limit) MACs")
        }
        try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'mac_next'", arguments: [String(next + 1)])
        return MACAddress(rawValue: 0x02 << 40 | serial << 24 | next)
    }
}
