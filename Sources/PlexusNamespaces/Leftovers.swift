import Foundation
import PlexusCore
import Synchronization

/// What this process created on the machine and must remove when it ends: network namespaces,
/// links in the host namespace (bridges, veths) and the process groups of its children.
///
/// Each item is listed before it is created and forgotten once it is removed. The list is kept
/// in memory, for a stop on a signal or at exit (``removeAll()``), and in a state file,
/// `<run directory>/<pid>-<start time>.json` (the run directory is /run/plexus, or
/// `$PLEXUS_RUN_DIR`), so that what a SIGKILLed process leaves behind is known to be its own:
/// ``removeDeadOwners(dryRun:)`` (`plexus cleanup`, and every run before it creates anything)
/// removes what the files of dead owners list, and nothing else. An owner is alive while a
/// process with its pid *and* its start time exists, so a reused pid is not mistaken for it.
/// TAP devices need no listing: they vanish with the process that holds them, or with the
/// namespace they are in.
public final class Leftovers: Sendable {
    public static let shared = Leftovers()

    public enum Item: Hashable, Sendable {
        case namespace(String)
        case link(String)
        /// A child's process group: its leader's pid, and the leader's start time.
        case processGroup(Int32, start: UInt64)
    }

    struct State {
        var items: [Item] = []
        /// The thread removing everything (a signal's, or the exiting one); new items are
        /// held back meanwhile.
        var removingThread: pthread_t?
        var creating = 0
        var checkedEarlierRuns = false
        var exitHookInstalled = false
    }
    private let state = Mutex(State())
    private let removal = Mutex(false)
    let owner = getpid()
    let ownerStart = processStartTime(getpid()) ?? 0

    /// Where the state files are: `$PLEXUS_RUN_DIR`, else /run/plexus.
    public static var directory: String {
        ProcessInfo.processInfo.environment["PLEXUS_RUN_DIR"] ?? "/run/plexus"
    }
    var file: String { "\(Self.directory)/\(owner)-\(ownerStart).json" }

    /// Whether the calling thread is the one removing everything.
    public var isRemovingThread: Bool {
        state.withLock { s in s.removingThread.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    /// Holds the calling thread back for good once everything is being removed (the process
    /// is about to end): nothing new is created behind the removal's back.
    func admit() {
        while state.withLock({ s in s.removingThread.map { pthread_equal($0, pthread_self()) == 0 } ?? false }) {
            sleep(1000)
        }
    }

    /// Marks the start of a creation (a removal waits for it to finish).
    func beginCreating() {
        admit()
        state.withLock { $0.creating += 1 }
    }

    func endCreating() { state.withLock { $0.creating -= 1 } }

    /// Lists `item`, runs `body` (which creates it) and keeps it listed, or forgets it when
    /// `body` throws.
    @discardableResult
    public func creating<T>(_ item: Item, _ body: () throws -> T) throws -> T {
        beginCreating()
        defer { endCreating() }
        add(item)
        do {
            return try body()
        } catch {
            forget([item])
            throw error
        }
    }

    /// Lists `item` (created, or about to be).
    public func add(_ item: Item) {
        let first = state.withLock { s -> Bool in
            defer { s.checkedEarlierRuns = true }
            return !s.checkedEarlierRuns
        }
        if first {
            // Before this process creates anything: what dead runs left behind goes.
            for r in Self.removeDeadOwners(dryRun: false) where !r.removed.isEmpty {
                FileHandle.standardError.write(Data("plexus: removed what an earlier run (pid \(r.owner), \(r.command)) left behind: \(r.removed.joined(separator: ", "))\n".utf8))
            }
        }
        state.withLock { s in
            if !s.exitHookInstalled {
                s.exitHookInstalled = true
                atexit { Leftovers.shared.removeAll() }
            }
            s.items.append(item)
            persist(s.items)
        }
    }

    /// Forgets items that were removed (or ended by themselves).
    public func forget(_ items: [Item]) {
        state.withLock { s in
            let gone = Set(items)
            s.items.removeAll { gone.contains($0) }
            persist(s.items)
        }
    }

    public var items: [Item] { state.withLock { $0.items } }

    /// Removes everything listed: kills the children's process groups, deletes the links and
    /// the namespaces; then the state file. Later creations are held back for good (call it
    /// only when the process is ending). A second caller waits for the first to finish.
    public func removeAll() {
        let first = removal.withLock { busy -> Bool in
            defer { busy = true }
            return !busy
        }
        guard first else {
            // Another thread is removing; wait (bounded) for it rather than exit under it.
            _ = waitUntil(seconds: 5) { state.withLock { $0.items.isEmpty } }
            return
        }
        state.withLock { $0.removingThread = pthread_self() }
        // Let a creation under way finish, so that what it creates is listed and removed.
        _ = waitUntil(seconds: 0.5) { state.withLock { $0.creating == 0 } }
        let items = state.withLock { $0.items }
        _ = Self.remove(items, dryRun: false)
        state.withLock { s in
            let gone = Set(items)
            s.items.removeAll { gone.contains($0) }
            persist(s.items)
        }
    }

    private func persist(_ items: [Item]) {
        guard !items.isEmpty else {
            unlink(file)
            return
        }
        var record = Record(owner: owner, ownerStart: ownerStart,
                            command: CommandLine.arguments.joined(separator: " "))
        for i in items {
            switch i {
            case .namespace(let n): record.namespaces.append(n)
            case .link(let l): record.links.append(l)
            case .processGroup(let p, let start): record.processes.append(.init(pid: p, start: start))
            }
        }
        guard let data = try? JSONEncoder().encode(record) else { return }
        try? FileManager.default.createDirectory(atPath: Self.directory, withIntermediateDirectories: true)
        let tmp = file + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: data) else { return }
        rename(tmp, file)
    }

    /// A state file: what one process created.
    struct Record: Codable {
        struct Child: Codable { var pid: Int32; var start: UInt64 }
        var owner: Int32
        var ownerStart: UInt64
        var command: String
        var namespaces: [String] = []
        var links: [String] = []
        var processes: [Child] = []
    }

    /// What was (or, in a dry run, would be) removed of one dead owner's leftovers.
    public struct Removal: Sendable {
        public var owner: Int32
        public var command: String
        public var removed: [String]
    }

    /// Removes what the state files of owners that are no longer alive list (or, with
    /// `dryRun`, only says what it would remove). Anything listed that no longer exists is
    /// skipped; a process is killed only if it is still in the child's process group, and a
    /// namespace's processes only if the namespace is one the owner created.
    public static func removeDeadOwners(dryRun: Bool) -> [Removal] {
        let dir = directory
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        var result: [Removal] = []
        for name in names.sorted() where name.hasSuffix(".json") {
            let path = dir + "/" + name
            guard let data = FileManager.default.contents(atPath: path),
                  let r = try? JSONDecoder().decode(Record.self, from: data) else { continue }
            if isAlive(r.owner, start: r.ownerStart) { continue }
            var claimed = path
            if !dryRun {
                // Claim it, so that two cleanups at once do not both work on it.
                claimed = path + ".removing-\(getpid())"
                guard rename(path, claimed) == 0 else { continue }
            }
            let items = r.processes.map { Item.processGroup($0.pid, start: $0.start) }
                + r.links.map(Item.link) + r.namespaces.map(Item.namespace)
            let removed = remove(items, dryRun: dryRun)
            if !dryRun { unlink(claimed) }
            result.append(Removal(owner: r.owner, command: r.command, removed: removed))
        }
        return result
    }

    /// Kills the process groups and what runs in the namespaces, deletes the links, then the
    /// namespaces; returns what it removed, one phrase each. Quick, for a stop on a signal: one
    /// pass over /proc, one `ip -batch` for every link, and namespaces unmounted here.
    static func remove(_ items: [Item], dryRun: Bool) -> [String] {
        var said: [String] = []
        let namespaces = items.compactMap { i -> String? in
            if case .namespace(let n) = i, FileManager.default.fileExists(atPath: netnsDirectory + n) { return n }
            return nil
        }
        var inodes: [UInt64: String] = [:]
        for ns in namespaces {
            if let i = inode(netnsDirectory + ns) { inodes[i] = ns }
        }
        // Children first: nothing keeps a namespace busy, nothing re-creates anything.
        let table = processTable()
        var doomed: [(Int32, String)] = []
        for case .processGroup(let group, let start) in items {
            // The group's number may now belong to a later process (its leader's pid reused).
            if let leader = table.first(where: { $0.pid == group }), leader.start != start { continue }
            for p in table where p.group == group && p.start >= start { doomed.append((p.pid, "process \(p.pid) (\(p.command))")) }
        }
        for p in table where p.pid != getpid() {
            if let ns = p.netns.flatMap({ inodes[$0] }), !doomed.contains(where: { $0.0 == p.pid }) {
                doomed.append((p.pid, "process \(p.pid) (\(p.command)) in namespace \(ns)"))
            }
        }
        for (pid, what) in doomed {
            if !dryRun { kill(pid, SIGKILL) }
            said.append(what)
        }
        let links = items.compactMap { i -> String? in
            if case .link(let l) = i, linkExists(l) { return l }
            return nil
        }
        if !links.isEmpty && !dryRun {
            // One `ip` for all of them (-force: on past one that went with another).
            let input = Pipe()
            if let ip = try? ChildProcess(["ip", "-force", "-batch", "-"], input: input.fileHandleForReading.fileDescriptor, listed: false) {
                try? input.fileHandleForReading.close()
                input.fileHandleForWriting.write(Data(links.map { "link del dev \($0)\n" }.joined().utf8))
                try? input.fileHandleForWriting.close()
                ip.wait()
            }
        }
        for l in links where dryRun || !linkExists(l) { said.append("link \(l)") }
        for ns in namespaces {
            // What `ip netns del` does: detach the namespace's bind mount, remove the file.
            if dryRun || ((umount2(netnsDirectory + ns, Int32(MNT_DETACH)) == 0 || errno == EINVAL) && unlink(netnsDirectory + ns) == 0) {
                said.append("namespace \(ns)")
            }
        }
        return said
    }

    static let netnsDirectory = "/run/netns/"

    /// Whether the process that had pid `pid` and started at `start` still runs: a later
    /// process with its pid is not it, and a zombie (killed, its parent's wait missing, as
    /// when the parent died too) holds nothing.
    static func isAlive(_ pid: Int32, start: UInt64) -> Bool {
        processTable(only: pid).first?.start == start
    }

    /// The inode of what `path` leads to (a namespace's file, /proc/PID/ns/net).
    static func inode(_ path: String) -> UInt64? {
        let statFile: (UnsafePointer<CChar>, UnsafeMutablePointer<stat>) -> Int32 = stat
        var st = stat()
        return statFile(path, &st) == 0 ? UInt64(st.st_ino) : nil
    }

    /// Whether a link of that name exists in this thread's network namespace.
    static func linkExists(_ name: String) -> Bool {
        guard name.utf8.count < Int(IFNAMSIZ) else { return false }
        return if_nametoindex(name) != 0
    }

    struct SeenProcess {
        var pid: Int32
        var group: Int32
        var start: UInt64
        var netns: UInt64?
        var command: String
    }

    /// Every live process (zombies left out: they hold nothing), with its group, its start
    /// time and its network namespace.
    static func processTable(only: Int32? = nil) -> [SeenProcess] {
        let all = only.map { [$0] } ?? ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        return all.compactMap { pid -> SeenProcess? in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
            let f = stat[stat.index(after: close)...].split(separator: " ")
            guard f.count > 19, f[0] != "Z", let group = Int32(f[2]), let start = UInt64(f[19]) else { return nil }
            let netns = inode("/proc/\(pid)/ns/net")
            return SeenProcess(pid: pid, group: group, start: start, netns: netns, command: String(stat[stat.index(after: open)..<close]))
        }
    }
}
