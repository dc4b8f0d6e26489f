import PlexusCore
import Synchronization

/// What one NBD request asks of the engine, in a lane's slot.
struct DiskRequest {
    enum Kind: UInt8 { case read, write, flush, trim, refuse }
    var kind = Kind.refuse
    var fua = false
    var handle: UInt64 = 0
    var offset: UInt64 = 0
    var length: UInt32 = 0
    /// The NBD error the request ends with (0: done), set by whoever completes it.
    var error: UInt32 = 0
    /// A request larger than a slot travels in several, each its own SCSI command: the first
    /// slot of the request, how many slots it has (on every part) and the next part's slot (-1:
    /// the last).
    var first: UInt16 = 0
    var parts: UInt16 = 1
    var next: Int16 = -1
}

/// The path between one NBD connection and the processing node's engine: `depth` request
/// slots, each with its descriptor and its slot of the exporter's ``PlexusCore/SharedSlots``
/// (a write's payload is read from the socket into it; a read's data is RDMA-written into it by
/// the control node and sent to the socket from it).
///
/// A slot goes round three ``PlexusCore/SlotQueue``s, each with one producer and one consumer:
/// the connection's reader takes a free slot, fills it and pushes it to `submitted` (waking the
/// engine); the engine submits it as a SCSI command and, at the STAT, pushes it to `completed`;
/// the connection's writer sends the reply and pushes it back to `free`. A slot has one owner
/// at a time, so nothing is locked and nothing allocates per request.
final class DiskLane: @unchecked Sendable {
    let index: Int
    let depth: Int
    let shared: SharedSlots
    let waker: EngineWaker
    /// Descriptors, one per slot: written by the slot's owner only.
    let requests: UnsafeMutablePointer<DiskRequest>
    /// The writer's own count of a request's completed parts, and its first error, at the
    /// request's first slot.
    let partsDone: UnsafeMutablePointer<UInt16>
    let partsError: UnsafeMutablePointer<UInt32>
    let free: SlotQueue
    let submitted: SlotQueue
    let completed: SlotQueue
    /// The reader sleeps here for a free slot; the writer rings.
    let freeBell: Doorbell
    /// The writer sleeps here for a completion; the engine rings.
    let completedBell: Doorbell
    /// A connection holds the lane.
    let claimed = Atomic<Bool>(false)
    /// The disk the connection opened (an index into the exporter's disks), set before the
    /// first submission.
    let disk = Atomic<Int>(0)
    /// The connection's writer could not send: the rest of its completions are only recycled.
    let sendFailed = Atomic<Bool>(false)
    /// The block size of the disk the connection opened (set at the claim; the connection's
    /// reader uses it).
    var blockSize = 512
    /// The engine has stopped: nothing submitted completes any more.
    let dead = Atomic<Bool>(false)

    init(index: Int, depth: Int, shared: SharedSlots, waker: EngineWaker) throws(PlexusError) {
        self.index = index
        self.depth = depth
        self.shared = shared
        self.waker = waker
        requests = .allocate(capacity: depth)
        requests.initialize(repeating: DiskRequest(), count: depth)
        partsDone = .allocate(capacity: depth)
        partsDone.initialize(repeating: 0, count: depth)
        partsError = .allocate(capacity: depth)
        partsError.initialize(repeating: 0, count: depth)
        let capacity = depth.nextPowerOfTwo
        free = SlotQueue(capacity: capacity)
        submitted = SlotQueue(capacity: capacity)
        completed = SlotQueue(capacity: capacity)
        freeBell = try Doorbell()
        completedBell = try Doorbell()
        for s in 0..<depth { free.push(UInt32(s)) }
    }

    deinit {
        requests.deallocate()
        partsDone.deallocate()
        partsError.deallocate()
    }

    /// The largest request: every slot of the lane.
    var maxRequest: Int { depth * shared.slotSize }

    /// The shared slot of the lane's slot `s`.
    func sharedSlot(_ s: Int) -> Int { index * depth + s }

    /// Claims the lane for a connection to disk `disk`; false when another holds it.
    func claim(disk d: Int, blockSize: Int) -> Bool {
        guard claimed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return false }
        self.blockSize = blockSize
        disk.store(d, ordering: .releasing)
        sendFailed.store(false, ordering: .relaxed)
        return true
    }

    /// Gives the lane back once every slot is free again.
    func release() { claimed.store(false, ordering: .releasing) }

    /// Reader: a free slot, waiting for one; nil when the engine has stopped.
    func takeFreeSlot() -> Int? {
        freeBell.sleep(until: { !free.isEmpty || dead.load(ordering: .acquiring) })
        guard !dead.load(ordering: .acquiring), let s = free.pop() else { return nil }
        return Int(s)
    }

    /// Reader: hands slot `s`, its descriptor filled, to the engine.
    func submit(_ s: Int) {
        submitted.push(UInt32(s))
        waker.wake()
    }

    /// Reader: waits until every slot has come back (or the engine stopped).
    func drain() {
        freeBell.sleep(until: { free.count == depth || dead.load(ordering: .acquiring) })
    }

    /// Engine: slot `s` is done with `error`; the writer is woken if it sleeps.
    func complete(_ s: Int, error: UInt32) {
        requests[s].error = error
        completed.push(UInt32(s))
        completedBell.ringIfSleeping()
    }

    /// Engine: it is stopping; wakes the reader for good.
    func kill() {
        dead.store(true, ordering: .releasing)
        freeBell.ring()
        completedBell.ring()
    }
}

extension Int {
    /// The smallest power of two at least `self` (1 for 0 and 1).
    var nextPowerOfTwo: Int {
        var p = 1
        while p < self { p <<= 1 }
        return p
    }
}
