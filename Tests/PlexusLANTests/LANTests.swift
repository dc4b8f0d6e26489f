import Foundation
import PlexusCore
import PlexusLAN
import Testing

func temporaryPath(_ name: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-lan-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

@Suite("Virtual MACs")
struct MACTests {
    @Test("MACs are locally administered unicast, carry the control node's serial, and parse back")
    func format() throws {
        let a = try MACAllocator(serial: 0x0102, stateFile: temporaryPath("mac"))
        let m = try a.allocate()
        #expect(m.isLocallyAdministered && !m.isGroup)
        #expect(m.description == "02:01:02:00:00:00")
        #expect(MACAddress(m.description) == m)
        #expect(MACAddress.broadcast.isBroadcast && !MACAddress.broadcast.isMulticast)
        #expect(MACAddress("01:00:5e:00:00:01")!.isMulticast)
        #expect(MACAddress("02:00:00:00:00") == nil && MACAddress("zz:00:00:00:00:00") == nil)
    }

    @Test("a restarted allocator never hands out a MAC twice, and writes its counter once per block")
    func persistence() throws {
        let path = temporaryPath("mac-counter")
        var seen = Set<MACAddress>()
        for restart in 0..<5 {
            let a = try MACAllocator(serial: 7, stateFile: path)
            let n = 10 + restart * 37
            for _ in 0..<n {
                let m = try a.allocate()
                #expect(seen.insert(m).inserted, "\(m) handed out twice")
            }
            #expect(a.writes == (n + Int(MACAllocator.block) - 1) / Int(MACAllocator.block))
        }
        print("MAC allocator: \(seen.count) MACs over 5 restarts, none twice")
        // The file belongs to serial 7.
        #expect(throws: PlexusError.self) { try MACAllocator(serial: 8, stateFile: path) }
        try "garbage".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: PlexusError.self) { try MACAllocator(serial: 7, stateFile: path) }
    }
}

@Suite("The virtual LAN server's table")
struct VLANTableTests {
    let v10 = VLANID(10)!, v20 = VLANID(20)!
    let m1 = MACAddress("02:00:01:00:00:01")!, m2a = MACAddress("02:00:01:00:00:02")!
    let m2b = MACAddress("02:00:01:00:00:03")!, m3 = MACAddress("02:00:01:00:00:04")!
    let m4 = MACAddress("02:00:01:00:00:05")!

    /// Node 1 on VLAN 10; node 2 on VLANs 10 and 20 (a NIC each, like PN_k in figure 2A); node 3
    /// on VLAN 20; node 4 on VLAN 10, allowed to listen promiscuously.
    func table() throws -> VirtualLANTable {
        var t = VirtualLANTable()
        try t.attach(VirtualNICBinding(node: 1, mac: m1, vlan: v10))
        try t.attach(VirtualNICBinding(node: 2, mac: m2a, vlan: v10))
        try t.attach(VirtualNICBinding(node: 2, mac: m2b, vlan: v20))
        try t.attach(VirtualNICBinding(node: 3, mac: m3, vlan: v20))
        try t.attach(VirtualNICBinding(node: 4, mac: m4, vlan: v10, promiscuousAllowed: true))
        return t
    }

    @Test("broadcast reaches every other NIC of the VLAN and nobody else")
    func broadcast() throws {
        var t = try table()
        let d = try t.route(from: 1, vlan: v10, destination: .broadcast, source: m1).get()
        #expect(d.to.map(\.mac) == [m2a, m4])
        let e = try t.route(from: 3, vlan: v20, destination: .broadcast, source: m3).get()
        #expect(e.to.map(\.mac) == [m2b])
    }

    @Test("isolation: no sending into a VLAN one is not on, no forged source, no unicast across VLANs")
    func isolation() throws {
        var t = try table()
        #expect(t.route(from: 3, vlan: v10, destination: .broadcast, source: m3) == .failure(.notMember))
        #expect(t.route(from: 3, vlan: v20, destination: m2b, source: m1) == .failure(.forgedSource))
        #expect(t.route(from: 1, vlan: v10, destination: m2a, source: m2a) == .failure(.forgedSource))
        #expect(t.route(from: 1, vlan: v10, destination: m3, source: m1) == .failure(.unknownDestination))
        #expect(t.refusals[.notMember] == 1 && t.refusals[.forgedSource] == 2 && t.refusals[.unknownDestination] == 1)
    }

    @Test("multicast goes to joined NICs; a group is dropped only when its last use leaves")
    func multicast() throws {
        var t = try table()
        let g = MACAddress("01:00:5e:01:02:03")!
        try t.join(g, mac: m2a)
        try t.join(g, mac: m2a)
        try t.join(g, mac: m4)
        #expect(try t.route(from: 1, vlan: v10, destination: g, source: m1).get().to.map(\.mac) == [m2a, m4])
        t.leave(g, mac: m2a)
        #expect(try t.route(from: 1, vlan: v10, destination: g, source: m1).get().to.map(\.mac) == [m2a, m4])
        t.leave(g, mac: m2a)
        t.leave(g, mac: m4)
        #expect(try t.route(from: 1, vlan: v10, destination: g, source: m1).get().to.isEmpty)
        #expect(t.groups[v10]?[g] == nil)
        #expect(throws: LANRefusal.notMember) { try t.join(g, mac: MACAddress("02:00:09:00:00:09")!) }
    }

    @Test("promiscuous listening: only where allowed; a listener gets each unicast once, broadcasts not twice")
    func promiscuous() throws {
        var t = try table()
        #expect(throws: LANRefusal.promiscuousNotAllowed) { try t.setPromiscuous(m1, true) }
        #expect(t.log.count == 1 && t.log[0].contains("refused promiscuous mode for \(m1)"))
        try t.setPromiscuous(m4, true)
        let u = try t.route(from: 1, vlan: v10, destination: m2a, source: m1).get()
        #expect(u.to.map(\.mac) == [m2a, m4] && u.promiscuousCopies == 1)
        let b = try t.route(from: 1, vlan: v10, destination: .broadcast, source: m1).get()
        #expect(b.to.map(\.mac) == [m2a, m4] && b.promiscuousCopies == 0)
        // A listener on VLAN 10 sees nothing of VLAN 20.
        let other = try t.route(from: 3, vlan: v20, destination: m2b, source: m3).get()
        #expect(other.to.map(\.mac) == [m2b])
    }

    @Test("a MAC belongs to one NIC; detaching removes it from groups and listeners")
    func attachDetach() throws {
        var t = try table()
        #expect(throws: PlexusError.self) { try t.attach(VirtualNICBinding(node: 9, mac: m1, vlan: v20)) }
        try t.setPromiscuous(m4, true)
        try t.join(MACAddress("01:00:5e:00:00:fb")!, mac: m4)
        t.detach(m4)
        #expect(t.members(of: v10).map(\.mac) == [m1, m2a])
        #expect(t.promiscuous[v10]?.isEmpty ?? true)
        #expect(t.groups[v10]?.isEmpty ?? true)
    }
}
