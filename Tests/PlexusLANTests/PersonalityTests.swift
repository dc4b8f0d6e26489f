import PlexusCore
import PlexusLAN
import Testing

@Suite("Processor personalities in the plan")
struct PersonalityTests {
    static let v10 = VLANID(10)!, v20 = VLANID(20)!
    static func address(_ n: NodeNumber) -> NodeAddress {
        NodeAddress(node: n, fabricA: FabricAddress(127, 0, 1, UInt8(n.rawValue), port: 7000),
                    fabricB: FabricAddress(127, 0, 2, UInt8(n.rawValue), port: 7000))
    }
    static let nics = [
        VirtualNICBinding(node: 3, mac: MACAddress("02:00:01:00:00:03")!, vlan: v10),
        VirtualNICBinding(node: 4, mac: MACAddress("02:00:01:00:00:04")!, vlan: v10),
        VirtualNICBinding(node: 4, mac: MACAddress("02:00:01:00:00:14")!, vlan: v20, promiscuousAllowed: true),
    ]

    static func plan() -> LANPlan {
        var plan = LANPlan(controls: [address(1)], nodes: [3, 4, 5].map(address), nics: nics)
        plan.personalities[4]!.addresses = [AddressBinding(vlan: v10, cidr: "10.10.0.4/24")]
        plan.personalities[4]!.workload = "exec sleep 100"
        plan.spares = [5]
        return plan
    }

    @Test("the plan holds each node's NICs as its personality, in the order given")
    func grouped() {
        let plan = Self.plan()
        #expect(plan.personalities[3]?.nics == [Self.nics[0]])
        #expect(plan.personalities[4]?.nics == Array(Self.nics[1...]))
        #expect(plan.nics == Self.nics)
        #expect(plan.holdsPersonality(4) && !plan.holdsPersonality(5))
        #expect(plan.waitsAsSpare(5) && !plan.waitsAsSpare(4))
    }

    @Test("a node's configuration carries its whole personality")
    func configuration() throws {
        let c = try Self.plan().configuration(for: 4).get()
        #expect(c.personality == Self.plan().personalities[4])
        #expect(c.peers.map(\.address.node) == [3])
        #expect(Self.plan().configuration(for: 5) == .failure(.notMember))
    }

    @Test("a failover moves the whole personality, every NIC now held by the spare")
    func move() throws {
        var plan = Self.plan()
        let before = plan.personalities[4]!
        let moved = plan.move(4, to: 5)
        #expect(moved == before.held(by: 5))
        #expect(moved.nics.allSatisfy { $0.node == 5 } && moved.nics.map(\.mac) == before.nics.map(\.mac))
        #expect(moved.addresses == before.addresses && moved.workload == before.workload)
        #expect(plan.personalities[4] == nil && plan.personalities[5] == moved)
        #expect(plan.spares.isEmpty)
        #expect(try plan.configuration(for: 5).get().personality == moved)
        let table = try plan.table()
        #expect(before.nics.allSatisfy { table.nics[$0.mac]?.node == 5 })
    }
}
