import CPlexus
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Work posted to an engine thread from elsewhere, with an eventfd to wake the ring.
final class JobInbox: Sendable {
    typealias Job = @Sendable (Engine?) -> Void
    struct State: ~Copyable {
        var open = true
        var jobs: [Job] = []
    }
    let fd: Int32
    private let state = Mutex(State())
    /// Jobs queued and not yet drained: a wake-up without a job (``EngineWaker``) drains
    /// without taking the lock.
    private let queued = Atomic<Int>(0)

    init() throws(PlexusError) {
        fd = eventfd(0, Int32(EFD_CLOEXEC))
        if fd < 0 { throw .system("eventfd") }
    }

    /// Queues a job and wakes the engine. False when the engine has stopped.
    func post(_ job: @escaping Job) -> Bool {
        state.withLock { s in
            guard s.open else { return false }
            s.jobs.append(job)
            queued.add(1, ordering: .releasing)
            var one: UInt64 = 1
            _ = write(fd, &one, 8)
            return true
        }
    }

    func drain() -> [Job] {
        guard queued.load(ordering: .acquiring) > 0 else { return [] }
        return state.withLock { s in
            let jobs = s.jobs
            s.jobs.removeAll(keepingCapacity: true)
            queued.store(0, ordering: .relaxed)
            return jobs
        }
    }

    /// Wakes the engine for a turn, with no job: no lock, no allocation.
    func wake() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    func close() -> [Job] {
        state.withLock { s in
            s.open = false
            let jobs = s.jobs
            s.jobs = []
            return jobs
        }
    }

    deinit { Glibc.close(fd) }
}

/// What an engine left behind when it stopped.
public struct ShutdownReport: Sendable, Hashable {
    /// Frames not returned to the pool (held by code after the driver was released).
    public var leakedFrames: Int
    /// Receive buffers not returned to their rings.
    public var leakedReceiveBuffers: Int
    public var portA: PortCounters
    public var portB: PortCounters
    public var turns: UInt64
}

/// A dedicated OS thread running one ``Engine``: the handle other threads (and async code)
/// hold. Sendable; every request is carried to the engine thread and runs there.
public final class EngineThread: Sendable {
    /// What the engine found when it started.
    public let info: EngineInfo
    let inbox: JobInbox
    let thread: pthread_t
    private let joined = Mutex<ShutdownReport?>(nil)
    private let reportBox: ReportBox

    final class ReportBox: Sendable {
        let value = Mutex<ShutdownReport?>(nil)
    }

    private init(info: EngineInfo, inbox: JobInbox, thread: pthread_t, reportBox: ReportBox) {
        self.info = info
        self.inbox = inbox
        self.thread = thread
        self.reportBox = reportBox
    }

    /// Starts an engine on a new OS thread and returns once it is ready.
    ///
    /// - Parameters:
    ///   - configuration: addresses, sizes and modes.
    ///   - driver: builds the driver on the engine thread (so it need not be Sendable).
    /// - Throws: ``PlexusError`` when the engine cannot start (bad configuration, a port that
    ///   cannot bind, io_uring unavailable); no thread is left behind.
    public static func start(
        _ configuration: EngineConfiguration,
        driver: @escaping @Sendable () -> any EngineDriver = { IdleDriver() }
    ) throws(PlexusError) -> EngineThread {
        let inbox = try JobInbox()
        let handoff = Mutex<Result<EngineInfo, PlexusError>?>(nil)
        let ready = DispatchSemaphore(value: 0)
        let reportBox = ReportBox()
        let name = String(configuration.name.prefix(15))
        let tid = try spawnThread { () in
            name.withCString { plx_name_current_thread($0) }
            let engine: Engine
            do throws(PlexusError) {
                engine = try Engine(configuration: configuration, inbox: inbox)
            } catch {
                handoff.withLock { $0 = .failure(error) }
                for job in inbox.close() { job(nil) }
                ready.signal()
                return
            }
            engine.driver = driver()
            handoff.withLock { $0 = .success(engine.info) }
            ready.signal()
            engine.runLoop()
            let out = engine.outstanding
            if out.frames > 0 || out.receiveBuffers > 0 {
                // Code still holds frames: keep their memory mapped so releasing them later is safe.
                _ = Unmanaged.passRetained(engine)
            } else {
                engine.close()
            }
            reportBox.value.withLock {
                $0 = ShutdownReport(
                    leakedFrames: out.frames, leakedReceiveBuffers: out.receiveBuffers,
                    portA: engine.counters(.a), portB: engine.counters(.b), turns: engine.turns)
            }
        }
        ready.wait()
        switch handoff.withLock({ $0 })! {
        case .failure(let e):
            pthread_join(tid, nil)
            throw e
        case .success(let info):
            return EngineThread(info: info, inbox: inbox, thread: tid, reportBox: reportBox)
        }
    }

    /// Runs `body` on the engine thread and returns its result, without blocking the caller's
    /// thread (safe from Swift Concurrency's cooperative pool).
    @discardableResult
    public func run<T: Sendable>(_ body: @escaping @Sendable (Engine) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
            let posted = inbox.post { engine in
                guard let engine else {
                    c.resume(throwing: PlexusError(.engineStopped, "the engine has stopped"))
                    return
                }
                c.resume(with: Result { try body(engine) })
            }
            if !posted { c.resume(throwing: PlexusError(.engineStopped, "the engine has stopped")) }
        }
    }

    /// Runs `body` on the engine thread and blocks the calling thread until it returns. Never
    /// call it from the engine thread itself, nor from a Swift Concurrency task (use ``run(_:)``).
    @discardableResult
    public func runAndWait<T: Sendable>(_ body: @escaping @Sendable (Engine) throws -> T) throws -> T {
        precondition(pthread_equal(pthread_self(), thread) == 0, "runAndWait called on the engine's own thread")
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let posted = inbox.post { engine in
            if let engine {
                let r = Result { try body(engine) }
                result.withLock { $0 = r }
            } else {
                result.withLock { $0 = .failure(PlexusError(.engineStopped, "the engine has stopped")) }
            }
            done.signal()
        }
        guard posted else { throw PlexusError(.engineStopped, "the engine has stopped") }
        done.wait()
        return try result.withLock { $0! }.get()
    }

    /// Stops the engine: cancels what is in flight, waits for every completion, releases the
    /// driver, and joins the thread. Safe to call more than once.
    @discardableResult
    public func stopAndWait() -> ShutdownReport {
        precondition(pthread_equal(pthread_self(), thread) == 0,
                     "stopAndWait called on the engine's own thread (call Engine.stop() there)")
        _ = inbox.post { $0?.stop() }
        return joined.withLock { j in
            if let j { return j }
            pthread_join(thread, nil)
            let r = reportBox.value.withLock { $0 }!
            j = r
            return r
        }
    }

    /// ``stopAndWait()`` without blocking the caller's thread.
    @discardableResult
    public func stop() async -> ShutdownReport {
        await withCheckedContinuation { (c: CheckedContinuation<ShutdownReport, Never>) in
            do {
                let joiner = try spawnThread { c.resume(returning: self.stopAndWait()) }
                pthread_detach(joiner)
            } catch {
                c.resume(returning: self.stopAndWait())
            }
        }
    }

    /// Whether the engine thread has finished (after a stop, including one a driver made).
    public var hasStopped: Bool { reportBox.value.withLock { $0 != nil } }

    /// The privileged interface of this engine, for the control plane.
    public var control: FabricControl { FabricControl(thread: self) }
}

final class ThreadBody: @unchecked Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Starts a plain OS thread (not one of Swift Concurrency's pool).
func spawnThread(_ body: @escaping @Sendable () -> Void) throws(PlexusError) -> pthread_t {
    var tid = pthread_t()
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    let rc = pthread_create(&tid, nil, { arg in
        let b = Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue()
        b.body()
        return nil
    }, box)
    if rc != 0 {
        Unmanaged<ThreadBody>.fromOpaque(box).release()
        throw PlexusError(.system, "pthread_create", errno: rc)
    }
    return tid
}

/// The privileged interface of an engine: establishing and tearing down VIs, registering RDMA
/// regions. Held by the control plane; a driver on the data path has no way to reach it.
public struct FabricControl: Sendable {
    let thread: EngineThread

    /// Establishes `vi` on this node, connected to VI `remoteVI` of the port at `peer`.
    public func establish(_ vi: VI, peer: FabricAddress, remoteVI: UInt32) async throws {
        try await thread.run { try $0.establish(vi, peer: peer, remoteVI: remoteVI) }
    }
    public func establishAndWait(_ vi: VI, peer: FabricAddress, remoteVI: UInt32) throws {
        try thread.runAndWait { try $0.establish(vi, peer: peer, remoteVI: remoteVI) }
    }

    /// Establishes many VIs in one trip to the engine thread.
    public func establishAndWait(_ vis: [(vi: VI, peer: FabricAddress, remoteVI: UInt32)]) throws {
        let list = vis.map { Triple(vi: $0.vi, peer: $0.peer, remoteVI: $0.remoteVI) }
        try thread.runAndWait { e in for t in list { try e.establish(t.vi, peer: t.peer, remoteVI: t.remoteVI) } }
    }

    public func teardown(_ vi: VI) async throws { try await thread.run { try $0.teardown(vi) } }
    public func teardownAndWait(_ vi: VI) throws { try thread.runAndWait { try $0.teardown(vi) } }

    /// Registers a region of `bytes` that the peers of `writers` may RDMA WRITE into. With no
    /// writers and no permissions it is local memory no peer reaches, e.g. the buffers of block
    /// I/O (``Engine/read(_:at:length:into:regionOffset:token:)``).
    public func registerRegion(bytes: Int, writers: [VI], permissions: RegionPermissions = .remoteWrite)
        async throws -> RegionKey
    {
        try await thread.run { try $0.registerRegion(bytes: bytes, writers: writers, permissions: permissions) }
    }
    public func registerRegionAndWait(bytes: Int, writers: [VI], permissions: RegionPermissions = .remoteWrite)
        throws -> RegionKey
    {
        try thread.runAndWait { try $0.registerRegion(bytes: bytes, writers: writers, permissions: permissions) }
    }

    public func deregisterRegion(_ key: RegionKey) async throws { try await thread.run { try $0.deregisterRegion(key) } }

    /// Sets (nil clears) the faults injected under one fabric of this engine.
    public func setFaults(_ plan: FaultPlan?, on fabric: Fabric) async throws {
        try await thread.run { $0.setFaults(plan, on: fabric) }
    }
    public func setFaultsAndWait(_ plan: FaultPlan?, on fabric: Fabric) throws {
        try thread.runAndWait { $0.setFaults(plan, on: fabric) }
    }

    struct Triple: Sendable {
        var vi: VI
        var peer: FabricAddress
        var remoteVI: UInt32
    }
}

/// Wakes an engine for a turn from any thread, without a job: for a service that polls a
/// queue of its own in its turn (an NBD connection handing requests to the processing node's
/// engine through a ``SlotQueue``). One `write(2)` to the engine's eventfd; no lock, no
/// allocation. Waking an engine that has stopped does nothing.
public struct EngineWaker: Sendable {
    let inbox: JobInbox

    public func wake() { inbox.wake() }
}

extension Engine {
    /// The handle other threads use to wake this engine for a turn.
    public var waker: EngineWaker { EngineWaker(inbox: inbox) }
}
