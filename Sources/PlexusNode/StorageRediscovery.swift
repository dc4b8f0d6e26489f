import Dispatch
import Foundation
import Logging
import PlexusCore
import PlexusLAN
import PlexusStorage
import Synchronization

/// A control node's storage rediscovery ("Configuration Component": discovery at platform boot,
/// and again later, each new view compared with the prior one): a thread of its own that runs
/// ``StorageDiscovery`` at start, every ``StorageDiscoveryConfiguration/everySeconds``, when
/// ``rediscover()`` is called, and when ``claim`` hands it an administrator's request. The
/// discovery blocks (libiscsi's synchronous calls), so it never runs on the engine thread or the
/// control node's main loop.
///
/// What a discovery found goes to ``apply``, which compares it with the prior view and keeps the
/// new one: the platform store in one write transaction (`PlatformStore.applyDiscovery`), or an
/// in-memory pool (``inMemory(maps:)``). Each change is a line in ``log`` (the swift-log
/// label `plexus.storage-pool`); assigned storage that vanished is logged at `error`.
public final class StorageRediscovery: Sendable {
    /// Compares a discovery (answering request `id`, if any) with the prior view, keeps the new
    /// one, and says what changed.
    public typealias Apply = @Sendable (_ result: StorageDiscoveryResult, _ request: Int64?) throws -> [StoragePool.Change.Note]
    /// An administrator's request this control node takes on, or nil.
    public typealias Claim = @Sendable () throws -> Int64?

    public let configuration: StorageDiscoveryConfiguration
    let apply: Apply
    let claim: Claim?
    /// How often ``claim`` is asked.
    let claimInterval: Duration

    struct State {
        var log: BoundedLog
        var runs = 0
        var requested = false
        var lastFailure: String?
    }
    let state: Mutex<State>
    let running = Atomic<Bool>(false)
    let wake = DispatchSemaphore(value: 0)
    let finished = DispatchSemaphore(value: 0)

    /// - Parameters:
    ///   - node: names the control node in the log's label.
    ///   - level: the least level the log's lines reach swift-log with.
    public init(configuration: StorageDiscoveryConfiguration, node: NodeNumber, level: Logger.Level = .info,
                claimInterval: Duration = .milliseconds(200), claim: Claim? = nil, apply: @escaping Apply) {
        self.configuration = configuration
        self.apply = apply
        self.claim = claim
        self.claimInterval = claimInterval
        var log = BoundedLog(label: "plexus.storage-pool", level: level)
        log.logger[metadataKey: "node"] = "\(node)"
        state = Mutex(State(log: log))
    }

    /// Starts the thread; the first discovery runs at once.
    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let t = Thread { [self] in
            loop()
            finished.signal()
        }
        t.name = "plexus-rediscovery"
        t.start()
    }

    /// Stops the thread: at once between discoveries; a discovery under way (a SAN that
    /// accepts connections but does not answer holds one for up to libiscsi's 10 s time-outs)
    /// is waited for up to `seconds`, then left to end by itself, its result not applied.
    /// Returns whether the thread ended in time.
    @discardableResult
    public func stop(seconds: Double = 1) -> Bool {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return true }
        wake.signal()
        return finished.wait(timeout: .now() + .milliseconds(Int(seconds * 1000))) == .success
    }

    /// Asks for a rediscovery now (on demand).
    public func rediscover() {
        state.withLock { $0.requested = true }
        wake.signal()
    }

    /// Discoveries applied so far.
    public var runs: Int { state.withLock { $0.runs } }

    /// The log's lines after the first `seen` (``BoundedLog/since(_:)``), and its new total.
    public func lines(since seen: Int) -> (lines: [String], total: Int) {
        state.withLock { ($0.log.since(seen).lines, $0.log.total) }
    }

    func note(_ line: String, level: Logger.Level = .info) { state.withLock { $0.log.append(line, level: level) } }

    func loop() {
        var last: ContinuousClock.Instant? = nil
        var request: Int64? = nil
        while running.load(ordering: .acquiring) {
            let every = configuration.everySeconds
            let due = last == nil || (every > 0 && last!.duration(to: .now) >= .seconds(every))
            let asked = state.withLock { s in
                defer { s.requested = false }
                return s.requested
            }
            if request == nil, let claim {
                do {
                    request = try claim()
                } catch {
                    failed("cannot read the discovery requests: \(error)")
                }
            }
            if due || asked || request != nil {
                runOnce(request: request)
                request = nil
                last = .now
                continue
            }
            let ms = Int(claimInterval.components.seconds * 1000 + claimInterval.components.attoseconds / 1_000_000_000_000_000)
            _ = wake.wait(timeout: .now() + .milliseconds(claim == nil && every == 0 ? 1000 : max(ms, 10)))
        }
    }

    /// Runs one discovery and applies it.
    func runOnce(request: Int64?) {
        let result = StorageDiscovery.run(configuration)
        guard running.load(ordering: .acquiring) else { return }  // stopped meanwhile
        for f in result.failures { note("rediscovery: \(f)", level: .warning) }
        do {
            let notes = try apply(result, request)
            for n in notes { note("\(n.subject): \(n.detail)", level: n.isError ? .error : .notice) }
            state.withLock {
                $0.runs += 1
                $0.lastFailure = nil
            }
        } catch {
            failed("cannot keep the rediscovery's result: \(error)")
        }
    }

    func failed(_ line: String) {
        let first = state.withLock { s in
            defer { s.lastFailure = line }
            return s.lastFailure != line
        }
        if first { note(line, level: .error) }
    }

    /// An ``Apply`` that keeps the pool in memory, with the assigned storage the paths of
    /// `maps()` (each processing node's storage map: the control node's own, without the
    /// platform store); the log names the nodes and (target, LUN)s that map a vanished path.
    public static func inMemory(node: NodeNumber, maps: @escaping @Sendable () -> [NodeNumber: [StorageMapping]]) -> Apply {
        let pool = Mutex(StoragePool())
        return { result, _ in
            var users: [String: [String]] = [:]
            for (n, map) in maps().sorted(by: { $0.key < $1.key }) {
                for m in map { users[StoragePool.key(m.path), default: []].append("node \(n) as target \(m.target) LUN \(m.lun)") }
            }
            let change = pool.withLock { p in
                let c = StoragePool.compare(prior: p, discovered: result.items, assigned: Set(users.keys))
                p = c.pool
                return c
            }
            return change.notes(by: "node \(node)") { users[StoragePool.key($0)]?.joined(separator: "; ") ?? "no node" }
        }
    }
}
