/// One piece of storage a control node found ("Configuration Component": the storage allocated
/// to the platform, which an administrator suballocates to PANs): a LUN on an iSCSI SAN or a
/// file or block device in a configured directory, named by the path a storage mapping takes.
public struct StorageItem: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The path a ``StorageMapping`` takes for it: `iscsi://host:port/target/lun` (port always
    /// written, ``StoragePool/key(_:)``) or an absolute file or block device path.
    public var path: String
    /// Its size in bytes (READ CAPACITY(16), `st_size`, `BLKGETSIZE64`).
    public var bytes: UInt64
    /// Its logical block size (the SAN's, `BLKSSZGET`; 512 for a regular file).
    public var blockSize: Int
    /// Where it was found: the portal (`host:port`) or the directory.
    public var source: String

    public init(path: String, bytes: UInt64, blockSize: Int, source: String) {
        self.path = path
        self.bytes = bytes
        self.blockSize = blockSize
        self.source = source
    }

    public var description: String { "\(path) (\(bytes) bytes, \(blockSize)-byte blocks, from \(source))" }
}

/// The pool of storage a control node knows ("Configuration Component"): what discovery found,
/// plus assigned storage that has since vanished (kept, marked absent, so that its vanishing is
/// reported once and an administrator sees it until it returns or is unmapped).
///
/// A plain value: ``compare(prior:discovered:assigned:)`` is the whole rediscovery rule, with no
/// I/O, so a control node with the platform store applies it inside one write transaction and
/// one without applies it in memory.
public struct StoragePool: Sendable, Hashable, Codable {
    /// An entry of the pool: the item as last found, and whether the last discovery found it.
    public struct Entry: Sendable, Hashable, Codable {
        public var item: StorageItem
        /// False for assigned storage the last discovery did not find.
        public var present: Bool
        public init(item: StorageItem, present: Bool = true) {
            self.item = item
            self.present = present
        }
    }

    /// By ``key(_:)`` of the item's path.
    public var entries: [String: Entry]

    public init(entries: [String: Entry] = [:]) { self.entries = entries }

    /// A pool holding `items`, all present.
    public init(items: [StorageItem]) {
        entries = Dictionary(items.map { (Self.key($0.path), Entry(item: $0)) }, uniquingKeysWith: { a, _ in a })
    }

    /// The entries, sorted by path.
    public var sorted: [Entry] { entries.values.sorted { $0.item.path < $1.item.path } }

    /// The form under which a path is compared: an iSCSI URL as ``ISCSIURL`` writes it (the
    /// port always present), anything else as given. A mapping's `iscsi://san/iqn…/1` and a
    /// discovered `iscsi://san:3260/iqn…/1` are the same storage.
    public static func key(_ path: String) -> String {
        guard ISCSIURL.isISCSI(path), let url = try? ISCSIURL(path) else { return path }
        return url.description
    }

    /// What a rediscovery changed.
    public struct Change: Sendable, Hashable, Codable {
        /// New storage, now in the pool an administrator allocates from.
        public var joined: [StorageItem] = []
        /// Unassigned storage that vanished: it left the pool.
        public var left: [StorageItem] = []
        /// Assigned storage that vanished: an error; it stays in the pool, absent.
        public var vanishedAssigned: [StorageItem] = []
        /// Assigned storage that had vanished and is found again.
        public var returned: [StorageItem] = []
        /// Storage found again whose size or block size changed (the new item).
        public var resized: [StorageItem] = []
        /// The pool after the rediscovery.
        public var pool = StoragePool()

        public init() {}

        /// Nothing joined, left, vanished, returned or changed size.
        public var isEmpty: Bool {
            joined.isEmpty && left.isEmpty && vanishedAssigned.isEmpty && returned.isEmpty && resized.isEmpty
        }
    }

    /// The rediscovery rule ("Configuration Component": "the control node that performs the
    /// discovery operation compares the new view with the prior view"). With `assigned` the
    /// keys (``key(_:)``) of the paths some storage map uses:
    /// - an item found that the prior view lacks joins the pool;
    /// - an item of the prior view not found leaves the pool when it is not assigned, and when
    ///   it is, it stays marked absent and is reported as vanished while assigned (once: an
    ///   absent entry not found again is not reported again);
    /// - an absent entry found again is reported as returned when assigned, as joined when not;
    ///   an absent entry not found and no longer assigned leaves the pool;
    /// - an item found again with another size or block size is reported as resized.
    public static func compare(prior: StoragePool, discovered: [StorageItem], assigned: Set<String>) -> Change {
        var change = Change()
        var next: [String: Entry] = [:]
        for item in discovered.sorted(by: { $0.path < $1.path }) {
            let k = key(item.path)
            guard next[k] == nil else { continue }
            next[k] = Entry(item: item)
            guard let old = prior.entries[k] else {
                change.joined.append(item)
                continue
            }
            if !old.present {
                if assigned.contains(k) { change.returned.append(item) } else { change.joined.append(item) }
            } else if old.item.bytes != item.bytes || old.item.blockSize != item.blockSize {
                change.resized.append(item)
            }
        }
        for (k, old) in prior.entries.sorted(by: { $0.key < $1.key }) where next[k] == nil {
            if assigned.contains(k) {
                next[k] = Entry(item: old.item, present: false)
                if old.present { change.vanishedAssigned.append(old.item) }
            } else {
                change.left.append(old.item)
            }
        }
        change.pool = StoragePool(entries: next)
        return change
    }
}

extension StoragePool.Change {
    /// A change as an event: `kind` (`storage-joined`, `storage-left`, `storage-returned`,
    /// `storage-resized`, or the error `storage-vanished-assigned`), the storage it is about,
    /// and what happened.
    public struct Note: Sendable, Hashable, Codable, CustomStringConvertible {
        /// The event's kind, as the store's events table keeps it.
        public var kind: String
        /// `storage <path>`.
        public var subject: String
        /// What happened; for an error, who maps the storage.
        public var detail: String
        /// Assigned storage vanished.
        public var isError: Bool { kind == "storage-vanished-assigned" }
        public var description: String { "\(kind): \(subject): \(detail)" }
    }

    /// Each change as an event, worded once for the store's event log and a control node's
    /// log. `by` names the control node that discovered; `users` says who maps a path (the
    /// PANs, personalities, processors and (target, LUN)s, or the processing nodes).
    public func notes(by: String, users: (String) -> String) -> [Note] {
        let found = "found by \(by)"
        var out: [Note] = []
        for i in joined {
            out.append(Note(kind: "storage-joined", subject: "storage \(i.path)",
                            detail: "joined the pool: \(i.bytes) bytes, \(i.blockSize)-byte blocks, from \(i.source); \(found)"))
        }
        for i in resized {
            out.append(Note(kind: "storage-resized", subject: "storage \(i.path)",
                            detail: "now \(i.bytes) bytes, \(i.blockSize)-byte blocks; \(found)"))
        }
        for i in returned {
            out.append(Note(kind: "storage-returned", subject: "storage \(i.path)",
                            detail: "assigned storage found again (\(users(i.path))); \(found)"))
        }
        for i in left {
            out.append(Note(kind: "storage-left", subject: "storage \(i.path)",
                            detail: "not found and not assigned: left the pool (\(by))"))
        }
        for i in vanishedAssigned {
            out.append(Note(kind: "storage-vanished-assigned", subject: "storage \(i.path)",
                            detail: "ERROR: assigned storage vanished (not found by \(by)): \(users(i.path))"))
        }
        return out
    }
}
