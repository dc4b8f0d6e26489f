import CPlexus
#if canImport(Glibc)
import Glibc
#endif

/// A file descriptor attached to an engine, read into and written from pool frames on its
/// io_uring: a TAP device of the virtual Ethernet driver.
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
    /// Times a read could not be re-armed at once because the pool was empty (retried next turn).
    public var poolEmpty: UInt64 = 0
}

struct DeviceRecord {
    var fd: Int32
    var open: Bool
    var wantedReads: Int
    var armedReads = 0
    var writesInFlight = 0
    var counters = DeviceCounters()
}

// MARK: - Devices
//
// A device keeps `reads` IORING_OP_READs armed, each into the payload of a pool frame; a
// completed read hands the frame (its length set to what was read) to the driver's
// `deviceRead`, and a new read is armed. `writeDevice` queues an IORING_OP_WRITE of a frame's
// payload; the frame returns to the pool when it completes. Nothing allocates per frame.

extension Engine {
    /// Attaches `fd` (the engine takes ownership and closes it at detach or stop) and keeps
    /// `reads` reads armed on it.
    public func attachDevice(fd: Int32, reads: Int = 8) throws(PlexusError) -> DeviceHandle {
        guard !stopping else { throw PlexusError(.engineStopped, "the engine is stopping") }
        guard fd >= 0, (1...64).contains(reads) else { throw PlexusError(.configuration, "attachDevice: bad fd or reads (1...64)") }
        guard devices.count < 1 << 15 else { throw PlexusError(.resourceExhausted, "too many devices") }
        let id = UInt32(devices.count)
        devices.append(DeviceRecord(fd: fd, open: true, wantedReads: reads))
        armDeviceReads(Int(id))
        return DeviceHandle(id: id)
    }

    /// Stops reading `device` and closes its fd once nothing is in flight on it.
    public func detachDevice(_ device: DeviceHandle) {
        let i = Int(device.id)
        guard i < devices.count, devices[i].open else { return }
        devices[i].open = false
        if devices[i].armedReads > 0 {
            let sqe = nextSQE()
            io_uring_prep_cancel_fd(sqe, devices[i].fd, 0)
            io_uring_sqe_set_data64(sqe, Self.data(.cancel, 0))
            inflight += 1
        }
        closeDeviceIfIdle(i)
    }

    /// Writes a frame's payload to `device` (one whole packet). The frame is consumed.
    public func writeDevice(_ frame: consuming Frame, to device: DeviceHandle) throws(SendError) {
        if stopping { throw .stopping }
        let i = Int(device.id)
        guard i < devices.count, devices[i].open else { throw .notEstablished }
        precondition(frame.pool === pool, "writeDevice: the frame comes from another engine's pool")
        let length = frame.length
        let slot = frame.surrender()
        pool.meta[Int(slot)] = FramePool.SlotMeta(vi: device.id, fabric: 0)
        pool.meta[Int(slot)].payloadLength = UInt32(length)
        let sqe = nextSQE()
        io_uring_prep_write(sqe, devices[i].fd, pool.slotPointer(slot) + FrameLayout.headerSize, UInt32(length), 0)
        io_uring_sqe_set_data64(sqe, Self.data(.deviceWrite, UInt64(slot) | UInt64(device.id) << 32))
        inflight += 1
        devices[i].writesInFlight += 1
    }

    /// Counters of an attached device.
    public func counters(_ device: DeviceHandle) -> DeviceCounters? {
        Int(device.id) < devices.count ? devices[Int(device.id)].counters : nil
    }

    func armDeviceReads(_ i: Int) {
        while devices[i].open && !stopping && devices[i].armedReads < devices[i].wantedReads {
            guard let frame = pool.take() else {
                devices[i].counters.poolEmpty &+= 1
                devicesStarved = true
                return
            }
            let slot = frame.surrender()
            let sqe = nextSQE()
            io_uring_prep_read(sqe, devices[i].fd, pool.slotPointer(slot) + FrameLayout.headerSize,
                               UInt32(FrameLayout.maxPayload), 0)
            io_uring_sqe_set_data64(sqe, Self.data(.deviceRead, UInt64(slot) | UInt64(i) << 32))
            inflight += 1
            devices[i].armedReads += 1
        }
    }

    /// Re-arms reads that waited for a free frame (called each turn while any did).
    func rearmStarvedDevices() {
        devicesStarved = false
        for i in devices.indices where devices[i].open && devices[i].armedReads < devices[i].wantedReads {
            armDeviceReads(i)
        }
    }

    func onDeviceRead(_ low: UInt64, res: Int32) {
        let slot = UInt32(truncatingIfNeeded: low)
        let i = Int(low >> 32)
        devices[i].armedReads -= 1
        if res > 0 && devices[i].open && !stopping {
            devices[i].counters.framesRead &+= 1
            devices[i].counters.bytesRead &+= UInt64(res)
            var frame = Frame(pool: pool, slot: slot)
            frame.length = Int(res)
            if let driver {
                driver.deviceRead(frame, from: DeviceHandle(id: UInt32(i)), engine: self)
            }
        } else {
            if res < 0 && res != -ECANCELED { devices[i].counters.readErrors &+= 1 }
            pool.release(slot)
        }
        armDeviceReads(i)
        closeDeviceIfIdle(i)
    }

    func onDeviceWrite(_ low: UInt64, res: Int32) {
        let slot = UInt32(truncatingIfNeeded: low)
        let i = Int(low >> 32)
        devices[i].writesInFlight -= 1
        if res >= 0 {
            devices[i].counters.framesWritten &+= 1
            devices[i].counters.bytesWritten &+= UInt64(res)
        } else {
            devices[i].counters.writeErrors &+= 1
        }
        pool.release(slot)
        closeDeviceIfIdle(i)
    }

    func closeDeviceIfIdle(_ i: Int) {
        guard !devices[i].open, devices[i].armedReads == 0, devices[i].writesInFlight == 0, devices[i].fd >= 0 else { return }
        _ = Glibc.close(devices[i].fd)
        devices[i].fd = -1
    }

    /// At shutdown, after every completion: close what is still open.
    func closeAllDevices() {
        for i in devices.indices where devices[i].fd >= 0 {
            devices[i].open = false
            closeDeviceIfIdle(i)
        }
    }
}
