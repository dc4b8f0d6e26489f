import PlexusLAN
import Synchronization

/// Frames a node's NICs received (tests of the in-process NIC backend): (NIC, destination MAC, source MAC, payload).
public final class Inbox: Sendable {
    public init() {}
    public let frames = Mutex<[(nic: MACAddress, dst: MACAddress, src: MACAddress, payload: [UInt8])]>([])
    public func record(_ nic: MACAddress, _ f: RawSpan) {
        f.withUnsafeBytes { b in
            let dst = MACAddress(at: b.baseAddress!), src = MACAddress(at: b.baseAddress! + 6)
            let payload = Array(b[14...])
            frames.withLock { $0.append((nic, dst, src, payload)) }
        }
    }
    public var count: Int { frames.withLock { $0.count } }
}

/// An Ethernet frame of the local experimental ethertype 0x88B5.
public func ethernet(_ dst: MACAddress, _ src: MACAddress, _ payload: [UInt8]) -> [UInt8] {
    dst.bytes + src.bytes + [0x88, 0xB5] + payload  // local experimental ethertype
}

