import Foundation
import GRDB
import PlexusCore
import PlexusStorage

// The storage statistics the running control nodes publish ("Management Interface Component"):
// each control node's snapshot, one row per (processing node, target, LUN) it serves, with the
// latency histogram serialised so that readers can add the two control nodes' and several
// LUNs' histograms (percentiles cannot be averaged).
extension PlatformStore {
    static func registerStorageStatistics(_ m: inout DatabaseMigrator) {
        m.registerMigration("storage statistics") { db in
            try db.execute(sql: """
                CREATE TABLE storageStatistics (
                    control INTEGER NOT NULL,
                    processor INTEGER NOT NULL,
                    target INTEGER NOT NULL,
                    lun INTEGER NOT NULL,
                    path TEXT NOT NULL,
                    statistics TEXT NOT NULL,
                    updatedMs INTEGER NOT NULL,
                    PRIMARY KEY (control, processor, target, lun));
                """)
        }
    }

    /// Replaces control node `control`'s published statistics with `statistics` (its whole
    /// snapshot: LUNs it no longer serves go), stamped `timeMs` (ms since 1970). Not an event:
    /// the store's revision does not change.
    public func publishStorageStatistics(control: NodeNumber, _ statistics: [LUNStatistics],
                                         timeMs: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let rows = try statistics.map { ($0, String(decoding: try encoder.encode($0.statistics), as: UTF8.self)) }
        try db.write { db in
            try db.execute(sql: "DELETE FROM storageStatistics WHERE control = ?", arguments: [control])
            for (s, json) in rows {
                try db.execute(sql: """
                    INSERT OR REPLACE INTO storageStatistics (control, processor, target, lun, path, statistics, updatedMs)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [control, Int64(s.processor), Int64(s.target), Int64(s.lun), s.path, json, timeMs])
            }
        }
    }

    /// Every published row: which control node, when, and its LUN's statistics. A row whose
    /// statistics do not decode is left out.
    public func publishedStorageStatistics() throws -> [PublishedLUNStatistics] {
        let decoder = JSONDecoder()
        return try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM storageStatistics ORDER BY processor, target, lun, control").compactMap { r in
                let json: String = r["statistics"]
                guard let s = try? decoder.decode(DiskStatistics.self, from: Data(json.utf8)) else { return nil }
                let processor: Int64 = r["processor"], target: Int64 = r["target"], lun: Int64 = r["lun"]
                guard let p = UInt32(exactly: processor), let t = UInt32(exactly: target), let l = UInt32(exactly: lun) else { return nil }
                return PublishedLUNStatistics(control: r["control"], updatedMs: r["updatedMs"],
                                              lun: LUNStatistics(processor: p, target: t, lun: l, path: r["path"], statistics: s))
            }
        }
    }

    /// The published statistics per LUN, per processor and per PAN
    /// (``StorageStatisticsReport``), of PAN `pan` or processor `processor` only when given.
    /// - Throws: ``PlatformError`` not-found for a PAN or processor the store does not have.
    public func storageStatistics(pan: String? = nil, processor: NodeNumber? = nil) throws -> StorageStatisticsReport {
        if let pan, !(try pans().contains { $0.name == pan }) {
            throw PlatformError(.notFound, field: "pan", "no PAN '\(pan)'")
        }
        if let processor, !(try processors().contains { $0.node == processor }) {
            throw PlatformError(.notFound, field: "processor", "no processor \(processor)")
        }
        return StorageStatisticsReport(published: try publishedStorageStatistics(), map: try storageMap(),
                                       pan: pan, processor: processor)
    }
}

/// One row of a control node's published storage statistics.
public struct PublishedLUNStatistics: Sendable, Hashable, Codable {
    public var control: NodeNumber
    /// When the control node published it (ms since 1970).
    public var updatedMs: Int64
    public var lun: LUNStatistics
}

/// Publishes a running control node's storage statistics to the store about once a second
/// (`plexus control --store` calls ``poll(now:)`` from its loop).
public final class StorageStatisticsPublisher {
    public let store: PlatformStore
    public let control: NodeNumber
    let read: () throws -> [LUNStatistics]
    /// Nanoseconds between publications.
    public var interval: UInt64 = 1_000_000_000
    var last: UInt64 = 0
    var failing: String?

    /// Publishes what `read` returns (``PlexusNode/ControlNode/storageStatistics()``) as
    /// control node `control`'s.
    public init(store: PlatformStore, control: NodeNumber, read: @escaping () throws -> [LUNStatistics]) {
        self.store = store
        self.control = control
        self.read = read
    }

    /// Publishes when ``interval`` has passed since the last time. Returns a line to log when
    /// publishing starts failing (said once) or works again.
    @discardableResult
    public func poll(now: UInt64 = nowNanos()) -> String? {
        guard last == 0 || now &- last >= interval else { return nil }
        last = now
        do {
            try store.publishStorageStatistics(control: control, try read())
            defer { failing = nil }
            return failing.map { _ in "storage statistics published again" }
        } catch {
            let reason = "\(error)"
            defer { failing = reason }
            return failing == nil ? "storage statistics not published: \(reason)" : nil
        }
    }
}
