// libFuzzer target for what a virtual LAN server or driver reads off an RVI: a LAN message
// (header, then an Ethernet frame), and the ARP packet inside it. Every input is parsed or
// refused, never crashes; what is accepted has its checksum field inside the frame, and an
// ARP packet is only ever read from a frame long enough to hold it.
import FuzzDriver
import PlexusLAN

func fuzzLANMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let m = UnsafeRawBufferPointer(start: data, count: size)
    guard let parsed = LANMessage.parse(m.bytes) else { return 0 }
    precondition(size >= LANMessage.headerSize + LANMessage.ethernetHeader)
    if let c = parsed.checksum {
        precondition(Int(c.start) >= LANMessage.ethernetHeader)
        precondition(Int(c.start) + Int(c.offset) + 2 <= size - LANMessage.headerSize)
    }
    let frame = UnsafeRawBufferPointer(rebasing: m[LANMessage.headerSize...])
    if ARPPacket.isARP(frame.bytes), let arp = ARPPacket(frame: frame.bytes) {
        precondition(frame.count >= 42)
        _ = arp.senderIP.description
    }
    _ = MembershipReport.parse(frame.bytes)
    return 0
}

runFuzzer { data, size in fuzzLANMessage(data ?? UnsafePointer(bitPattern: 1)!, size) }
