// libFuzzer target for the multicast membership reports a node's driver reads from its TAP
// device (IGMPv1/v2/v3 and MLDv1/v2 in Ethernet frames): every input yields reports or none,
// never a crash, and never more group records than the frame can hold.
import FuzzDriver
import PlexusLAN

func fuzzMembership(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let reports = MembershipReport.parse(bytes.bytes)
    // The smallest group record (IGMPv3) is 8 bytes.
    precondition(reports.count <= max(1, size / 8))
    return 0
}

runFuzzer { data, size in fuzzMembership(data ?? UnsafePointer(bitPattern: 1)!, size) }
