import CPlexus
#if canImport(Glibc)
import Glibc
#endif

/// A file descriptor attached to an engine, read into and written from pool frames by the
/// engine thread when io_uring reports it readable: a TAP device of the virtual Ethernet driver.
public struct DeviceHandle: Hashable, Sendable, CustomStringConvertible {
    public let id: UInt32
    public var description: String { "device \(id)" }
}

/// What an attached device did.
public struct DeviceCounters: Sendable, Hashable {
    public var framesRead: UInt64 = 0
    public var bytesRead: UInt64 = 0
    public var framesWritten: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    public var readErrors: UInt64 = 0
    public var writeErrors: UInt64 = 0
    /// Times a read waited for a free pool frame (retried next turn).
    public var poolEmpty: UInt64 = 0
}

struct DeviceRecord {
    var fd: Int32
    var open: Bool
    /// A multishot POLLIN is armed on the fd.
    var pollArmed = false
    /// The fd may have packets left to read (the per-turn budget ran out, or the pool was empty).
    var readable = false
    /// Busy-poll: written to since it was last read (the kernel may have answered inside the write).
    var written = false
    /// Busy-poll: the turn in which a read last found it empty (not read again in that turn).
    var emptiedAt: UInt64 = .max
    /// Busy-poll: the last turn read more than one packet from it; its packets are then read in
    /// a batch and flushed together, not the first one at once.
    var backlog = false
    var counters = DeviceCounters()
}

// MARK: - Devices
//
// A TAP fd is not one io_uring can read without a worker thread (the tun driver does not
// support non-blocking submission, so IORING_OP_READ would park an io-wq worker per read and
// add two thread hand-offs per packet). So a device has a multishot POLLIN armed on the ring,
// and when it fires the engine thread reads the fd (non-blocking) into pool frames until it is
// empty, at most `deviceReadBudget` packets per turn; each frame goes to the driver's
// `deviceRead`. Writes are one non-blocking write(2) from a frame's payload. Nothing allocates
// per packet.

extension Engine {
    /// Packets read from one device per loop turn before the others (and the fabric) get a turn.
    static let deviceReadBudget = 64

    /// Attaches `fd` (the engine takes ownership, makes it non-blocking, and closes it at
    /// detach or stop) and reads it whenever it is readable.
    public func attachDevice(fd: Int32) throws(PlexusError) -> DeviceHandle {
        guard !stopping else { throw PlexusError(.engineStopped, "the engine is stopping") }
        guard fd >= 0 else { throw PlexusError(.configuration, "attachDevice: bad fd") }
        guard devices.count < 1 << 15 else { throw PlexusError(.resourceExhausted, "too many devices") }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else { throw .system("fcntl O_NONBLOCK on a device") }
        let id = UInt32(devices.count)
        devices.append(DeviceRecord(fd: fd, open: true))
        armDevicePoll(Int(id))
        return DeviceHandle(id: id)
    }

    /// Stops reading `device` and closes its fd once its poll is cancelled.
    public func detachDevice(_ device: DeviceHandle) {
        let i = Int(device.id)
        guard i < devices.count, devices[i].open else { return }
        devices[i].open = false
        devices[i].readable = false
        if devices[i].pollArmed {
            let sqe = nextSQE()
            io_uring_prep_cancel_fd(sqe, devices[i].fd, 0)
            io_uring_sqe_set_data64(sqe, Self.data(.cancel, 0))
            inflight += 1
        }
        closeDeviceIfIdle(i)
    }

    /// Writes a frame's payload to `device` as one packet (a non-blocking write(2)); the frame
    /// returns to the pool. A device that cannot take it (its queue is full) drops it and
    /// counts a write error, as a NIC would.
    public func writeDevice(_ frame: consuming Frame, to device: DeviceHandle) throws(SendError) {
        if stopping { throw .stopping }
        let i = Int(device.id)
        guard i < devices.count, devices[i].open else { throw .notEstablished }
        let n = frame.withUnsafePayload { p in Glibc.write(devices[i].fd, p.baseAddress!, p.count) }
        if n == frame.length {
            devices[i].counters.framesWritten &+= 1
            devices[i].counters.bytesWritten &+= UInt64(n)
            // The kernel may have answered inside the write (an echo reply, a TCP ack): read
            // the device before the turn's flush rather than wait for its poll to fire. A
            // busy-poll engine reads it right after the port whose frame it wrote
            // (answerWrites).
            devices[i].readable = true
            devicesPending = true
            devices[i].written = true
            devicesWritten = true
        } else {
            devices[i].counters.writeErrors &+= 1
        }
    }

    /// Counters of an attached device.
    public func counters(_ device: DeviceHandle) -> DeviceCounters? {
        Int(device.id) < devices.count ? devices[Int(device.id)].counters : nil
    }

    func armDevicePoll(_ i: Int) {
        guard devices[i].open, !stopping, !devices[i].pollArmed else { return }
        let sqe = nextSQE()
        io_uring_prep_poll_multishot(sqe, devices[i].fd, UInt32(POLLIN))
        io_uring_sqe_set_data64(sqe, Self.data(.devicePoll, UInt64(i)))
        inflight += 1
        devices[i].pollArmed = true
    }

    /// A poll completion: the fd is readable (or the poll ended).
    func onDevicePoll(_ low: UInt64, res: Int32, flags: UInt32) {
        let i = Int(low)
        if flags & plx_IORING_CQE_F_MORE == 0 {
            inflight -= 1
            devices[i].pollArmed = false
        }
        if res > 0 && devices[i].open && !stopping {
            devices[i].readable = true
            readDevice(i)
        }
        if devices[i].open && !stopping { armDevicePoll(i) }
        closeDeviceIfIdle(i)
    }

    /// Reads up to `budget` packets from a readable device; leaves it marked readable if more
    /// may wait. Returns how many packets it read.
    @discardableResult
    func readDevice(_ i: Int, budget limit: Int = Engine.deviceReadBudget) -> Int {
        var budget = limit
        while budget > 0 && devices[i].open && !stopping {
            guard var frame = pool.take() else {
                devices[i].counters.poolEmpty &+= 1
                devicesPending = true
                return limit - budget
            }
            let fd = devices[i].fd
            let n = frame.withUnsafeMutablePayload { p in Glibc.read(fd, p.baseAddress!, p.count) }
            if n <= 0 {
                if n < 0 && errno != EAGAIN && errno != EINTR { devices[i].counters.readErrors &+= 1 }
                devices[i].readable = false
                devices[i].emptiedAt = turns
                return limit - budget  // the frame goes back to the pool
            }
            devices[i].counters.framesRead &+= 1
            devices[i].counters.bytesRead &+= UInt64(n)
            frame.length = n
            if let driver {
                driver.deviceRead(frame, from: DeviceHandle(id: UInt32(i)), engine: self)
            }
            budget -= 1
        }
        if devices[i].readable { devicesPending = true }
        return limit - budget
    }

    /// Busy-poll, right after a port is read: each device a frame from it was written to is read,
    /// and what it answered is flushed at once. The kernel answers some packets inside the write
    /// (an echo reply, a TCP acknowledgement); the answer then leaves carrying the
    /// acknowledgement of the frame, without waiting for the other port's read or the other
    /// devices. One packet is read before the flush (the read that finds the device empty comes
    /// after). A device with a backlog is left to ``pollDevices()``, whose batch leaves in the
    /// turn's last flush.
    @inline(__always)
    func answerWrites() {
        devicesWritten = false
        var answered = false
        for i in devices.indices where devices[i].written {
            devices[i].written = false
            guard devices[i].open && !devices[i].backlog else { continue }
            devices[i].readable = true
            if readDevice(i, budget: 1) > 0 { answered = true }
        }
        if answered { flushReplies() }
    }

    /// Busy-poll: every turn, every device is read until empty (or its budget is spent), except
    /// one already found empty in this turn. While a device's traffic is sparse, its first packet
    /// is flushed before the device is read again (the read that finds it empty would otherwise
    /// come first); with a backlog (the last turn read more than one packet) its packets are read
    /// in a batch and leave in the turn's flush.
    func pollDevices() {
        for i in devices.indices where devices[i].open && devices[i].emptiedAt != turns {
            devices[i].readable = true
            if devices[i].backlog {
                devices[i].backlog = readDevice(i) > 1
            } else if readDevice(i, budget: 1) > 0 {
                flushReplies()
                if devices[i].readable { devices[i].backlog = readDevice(i) > 0 }
            }
        }
    }

    /// Each turn while a device may still hold packets (budget spent, or the pool was empty).
    func readPendingDevices() {
        devicesPending = false
        for i in devices.indices where devices[i].open && devices[i].readable {
            readDevice(i)
        }
    }

    func closeDeviceIfIdle(_ i: Int) {
        guard !devices[i].open, !devices[i].pollArmed, devices[i].fd >= 0 else { return }
        _ = Glibc.close(devices[i].fd)
        devices[i].fd = -1
    }

    /// At shutdown, after every completion: close what is still open.
    func closeAllDevices() {
        for i in devices.indices where devices[i].fd >= 0 {
            devices[i].open = false
            devices[i].pollArmed = false
            closeDeviceIfIdle(i)
        }
    }
}
