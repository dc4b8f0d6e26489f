import Foundation
import GRDB
import PlexusLAN
import PlexusNode

/// The platform's state on a control node's disk: one SQLite database (GRDB), changed only by
/// the commands below, each in one transaction. A command that is refused changes nothing: it
/// throws before the transaction commits, and SQLite rolls everything back. A control node that
/// restarts opens the same file and has every PAN, personality, binding and the MAC counter.
///
/// Two control nodes on one host may share the file (SQLite's locks serialize their writes;
/// GRDB waits up to `busyTimeout` for the other's transaction). How the state stays consistent
/// when the control nodes sit on different hosts is written down in `docs/operations.md`.
public final class PlatformStore: Sendable {
    let db: DatabasePool
    public let path: String

    /// Opens (creating and migrating if need be) the database at `path`.
    /// - Parameter serial: the control node serial that new MACs carry, recorded at creation
    ///   (a database created with another serial keeps its own).
    public init(path: String, serial: UInt16 = 1, busyTimeout: TimeInterval = 5) throws {
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(busyTimeout)
        config.foreignKeysEnabled = true
        db = try DatabasePool(path: path, configuration: config)
        try Self.migrator.migrate(db)
        try db.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO meta(key, value) VALUES ('serial', ?), ('mac_next', '0')",
                           arguments: [String(serial)])
        }
    }

    /// The schema, one migration per change; a database is brought up to date when opened.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: platform model") { db in
            try db.execute(sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE processors (
                    node INTEGER PRIMARY KEY,
                    state TEXT NOT NULL CHECK (state IN ('free', 'assigned', 'fenced')),
                    personality TEXT UNIQUE,
                    fencedReason TEXT);
                CREATE TABLE pans (name TEXT PRIMARY KEY, createdMs INTEGER NOT NULL);
                CREATE TABLE vlans (vlan INTEGER PRIMARY KEY, pan TEXT NOT NULL REFERENCES pans(name) ON DELETE CASCADE);
                CREATE TABLE personalities (
                    name TEXT PRIMARY KEY,
                    pan TEXT NOT NULL REFERENCES pans(name) ON DELETE CASCADE,
                    node INTEGER UNIQUE REFERENCES processors(node),
                    workload TEXT,
                    generation INTEGER NOT NULL DEFAULT 0);
                CREATE TABLE nics (
                    mac TEXT PRIMARY KEY,
                    personality TEXT NOT NULL REFERENCES personalities(name) ON DELETE CASCADE,
                    vlan INTEGER NOT NULL REFERENCES vlans(vlan),
                    promiscuousAllowed INTEGER NOT NULL DEFAULT 0,
                    UNIQUE (personality, vlan));
                CREATE TABLE ips (
                    vlan INTEGER NOT NULL,
                    host TEXT NOT NULL,
                    prefix INTEGER NOT NULL,
                    personality TEXT NOT NULL REFERENCES personalities(name) ON DELETE CASCADE,
                    PRIMARY KEY (vlan, host));
                CREATE TABLE storage (
                    personality TEXT NOT NULL REFERENCES personalities(name) ON DELETE CASCADE,
                    target INTEGER NOT NULL,
                    lun INTEGER NOT NULL,
                    address TEXT NOT NULL,
                    access TEXT NOT NULL CHECK (access IN ('read-write', 'read-only')),
                    PRIMARY KEY (personality, target, lun));
                CREATE TABLE events (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    timeMs INTEGER NOT NULL,
                    kind TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    detail TEXT NOT NULL);
                """)
        }
        registerStoragePool(&m)
        registerStorageStatistics(&m)
        return m
    }

    /// The migrations this build knows, in order, and those applied to the open database.
    public static var migrations: [String] { migrator.migrations }
    public func appliedMigrations() throws -> [String] { try db.read { try Self.migrator.appliedMigrations($0) } }
}
