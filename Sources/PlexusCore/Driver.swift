/// The outcome of a send, delivered to ``EngineDriver/sendCompleted(on:result:engine:)``.
public enum SendCompletion: Sendable, Hashable {
    /// The kernel took the whole frame (every segment).
    case sent
    /// The kernel refused it; `errno` says why (e.g. `ECONNREFUSED` when the peer port is gone).
    case failed(errno: Int32)
}

/// Code that runs on an engine's thread and is called by its loop: the owner of the data path.
///
/// This is the VI completion queue of VIA presented as calls: each loop turn the engine reaps
/// the io_uring completion queue and calls the driver once per completion, in order. Calls never
/// overlap and always come from the engine thread, so a driver needs no locks. Every method has
/// a default that does nothing (a received frame is then released at once).
///
/// A driver must not block: it shares the thread with the port's receive path.
public protocol EngineDriver: AnyObject {
    /// Called once on the engine thread before the first loop turn.
    func engineDidStart(_ engine: Engine)
    /// Called once per loop turn, before the turn's single submission. Post sends here.
    func engineTurn(_ engine: Engine)
    /// Busy-poll mode only: called after a port's sockets were read and its frames handed to
    /// ``received(_:engine:)``, just before that turn's replies are flushed. A layer that
    /// gathers sends (the RCLAN layer's coalescing) posts them here so a reply leaves at once.
    func engineWillFlush(_ engine: Engine)
    /// A frame arrived on a VI that had a receive posted (the posted receive is consumed).
    func received(_ frame: consuming InboundFrame, engine: Engine)
    /// A send (or an RDMA WRITE) posted on `vi` has completed, and its frame is back in the pool.
    func sendCompleted(on vi: VI, result: SendCompletion, engine: Engine)
    /// A send made with `returnOnCompletion` has completed: the frame comes back, payload
    /// intact, to keep (e.g. until acknowledged) or send again. Dropping it releases it.
    func sendCompleted(returning frame: consuming Frame, on vi: VI, result: SendCompletion, engine: Engine)
    /// An RDMA WRITE with immediate data landed in `region` through `vi`, consuming a posted
    /// receive. `offset` and `length` describe the last datagram of that write.
    func rdmaImmediate(_ immediate: UInt32, on vi: VI, region: RegionKey, offset: UInt64, length: Int,
                       engine: Engine)
    /// The target refused an RDMA WRITE that this node sent on `vi`: nothing of it landed.
    func rdmaWriteRefused(on vi: VI, error: RDMAError, region: RegionKey, offset: UInt64, engine: Engine)
    /// A device attached with ``Engine/attachDevice(fd:)`` produced a packet: the frame
    /// holds it (`length` bytes). Dropping the frame releases it.
    func deviceRead(_ frame: consuming Frame, from device: DeviceHandle, engine: Engine)
    /// A timer scheduled with ``Engine/schedule(after:token:)`` fired.
    func timerFired(token: UInt32, engine: Engine)
    /// A block I/O operation submitted with `token` on a region, or a flush or discard, has
    /// completed. `result` is the bytes read or written (fewer than asked only for a read that
    /// met the end of the file), 0 for a flush or discard, or -errno. Also called while the
    /// engine stops, for each operation still in flight (cut short with `-ECANCELED`).
    func blockIOCompleted(token: UInt32, result: Int32, engine: Engine)
    /// A read into or write from a pool frame has completed, as above: the frame comes back,
    /// a read's ``Frame/length`` set to the bytes read. Dropping it releases it.
    func blockIOCompleted(returning frame: consuming Frame, token: UInt32, result: Int32, engine: Engine)
    /// A descriptor watched with ``Engine/watch(fd:events:token:)`` is ready: `events` holds
    /// the poll events that fired (`POLLIN`, `POLLOUT`, `POLLERR`, `POLLHUP` …), or -errno
    /// (`-ECANCELED` after ``Engine/unwatch(token:)`` or while the engine stops). One-shot:
    /// watch again for the next readiness.
    func fdReady(token: UInt32, events: Int32, engine: Engine)
    /// The engine is stopping: every operation in flight has completed. Release held frames.
    func engineWillStop(_ engine: Engine)
}

extension EngineDriver {
    public func engineDidStart(_ engine: Engine) {}
    public func engineTurn(_ engine: Engine) {}
    public func engineWillFlush(_ engine: Engine) {}
    public func received(_ frame: consuming InboundFrame, engine: Engine) {}
    public func sendCompleted(on vi: VI, result: SendCompletion, engine: Engine) {}
    public func sendCompleted(returning frame: consuming Frame, on vi: VI, result: SendCompletion, engine: Engine) {}
    public func rdmaImmediate(_ immediate: UInt32, on vi: VI, region: RegionKey, offset: UInt64, length: Int,
                              engine: Engine) {}
    public func rdmaWriteRefused(on vi: VI, error: RDMAError, region: RegionKey, offset: UInt64, engine: Engine) {}
    public func deviceRead(_ frame: consuming Frame, from device: DeviceHandle, engine: Engine) {}
    public func timerFired(token: UInt32, engine: Engine) {}
    public func blockIOCompleted(token: UInt32, result: Int32, engine: Engine) {}
    public func blockIOCompleted(returning frame: consuming Frame, token: UInt32, result: Int32, engine: Engine) {}
    public func fdReady(token: UInt32, events: Int32, engine: Engine) {}
    public func engineWillStop(_ engine: Engine) {}
}

/// A driver that does nothing: frames that arrive are released at once.
public final class IdleDriver: EngineDriver {
    public init() {}
}
