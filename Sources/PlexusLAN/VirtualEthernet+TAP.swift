#if canImport(Glibc)
import Glibc
#endif
import PlexusCore
import PlexusRCLAN

extension VirtualEthernet {
    /// Gives NIC `mac` a Linux TAP device: `name` is created in the engine thread's network
    /// namespace (so call this on the engine thread), with a virtio-net header and checksum
    /// offload. Every frame the kernel sends out of it goes onto the virtual LAN; every frame for
    /// the NIC is written to it. Configure the interface (MAC address, MTU ≤ ``TAP/maximumMTU``,
    /// IP addresses, up) with `ip`.
    /// - Returns: the interface's name.
    @discardableResult
    public func attachTAP(named name: String, to mac: MACAddress, layer: RCLAN) throws -> String {
        guard nics[mac] != nil else { throw LANRefusal.notMember }
        let (fd, actual) = try TAP.open(name)
        let handle = try layer.attachDevice(fd: fd, for: self)
        taps[mac] = handle
        nicOfTap[handle] = mac
        return actual
    }

    public func deviceRead(_ frame: consuming Frame, from device: DeviceHandle, layer: RCLAN) {
        guard let nic = nicOfTap[device], let vlan = nics[nic] else { return }
        // The packet: [virtio-net header][Ethernet frame]. ARP (rare) takes the copying path,
        // which also informs the other control node.
        let parsed: (checksum: LANMessage.PartialChecksum?, isARP: Bool)? = frame.withUnsafePayload { packet in
            guard let (checksum, ethernet) = TAP.parseVirtioHeader(packet) else { return nil }
            if ARPPacket.isARP(ethernet) {
                do { try transmit(ethernet, from: nic, checksum: checksum, layer: layer) } catch { dropped += 1 }
                return (checksum, true)
            }
            if MACAddress(at: ethernet.baseAddress!).isMulticast { snoop(ethernet, nic: nic, layer: layer) }
            return (checksum, false)
        }
        guard let parsed else {
            tapMalformed += 1
            return
        }
        if parsed.isARP { return }
        if watchFirstFrame && frame.withUnsafePayload({ p in
            p.count >= TAP.virtioHeaderSize + 14 && p[TAP.virtioHeaderSize + 12] == 0x08 && p[TAP.virtioHeaderSize + 13] == 0x00
        }) {
            watchFirstFrame = false
            pendingReports.append(.firstPacketServed)
            reportedSteps.append(.firstPacketServed)
        }
        // Everything else: the virtio-net header becomes the LAN header, and the frame itself
        // is the message (no copy).
        var f: Frame? = frame
        let destination = f!.withUnsafeMutablePayload { p in
            LANMessage.encodeHeader(vlan: vlan, relayed: false, checksum: parsed.checksum, into: p)
            return MACAddress(at: p.baseAddress! + LANMessage.headerSize)
        }
        if let rvi = directPath(to: destination, layer: layer) {
            if listeners[vlan]?.isEmpty == false {
                f!.withUnsafeMutablePayload { p in cloneToListeners(p, count: p.count, vlan: vlan, destination: destination, layer: layer) }
            }
            do {
                try layer.send(&f, on: rvi)
                sentDirect += 1
                return
            } catch {}
        }
        guard let s = serverPath(for: destination, from: nic, layer: layer) else {
            dropped += 1
            return
        }
        do {
            try layer.send(&f, on: servers[s])
            sentToServer[s] += 1
        } catch {
            dropped += 1
        }
    }

    /// Hands a frame to NIC `nic`: to its TAP device if it has one, else to ``onFrame``.
    func hand(_ nic: MACAddress, _ frame: UnsafeRawBufferPointer, checksum: LANMessage.PartialChecksum?, layer: RCLAN) {
        if watchGaps {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            let t = UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
            if lastHandNanos != 0 { longestGapNanos = max(longestGapNanos, t &- lastHandNanos) }
            lastHandNanos = t
        }
        guard let tap = taps[nic] else {
            onFrame(nic, frame.bytes)
            return
        }
        guard var f = layer.engine.takeFrame() else {
            tapWriteFailures += 1
            return
        }
        f.withUnsafeMutablePayload { out in
            TAP.writeVirtioHeader(checksum, into: out)
            (out.baseAddress! + TAP.virtioHeaderSize).copyMemory(from: frame.baseAddress!, byteCount: frame.count)
        }
        f.length = TAP.virtioHeaderSize + frame.count
        do { try layer.engine.writeDevice(f, to: tap) } catch { tapWriteFailures += 1 }
    }
}
