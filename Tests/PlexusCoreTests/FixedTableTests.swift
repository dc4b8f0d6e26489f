@testable import PlexusCore
import Testing

@Suite("Fixed table (per-slot and per-VI bookkeeping)")
struct FixedTableTests {
    struct Record: Equatable {
        var sequence: UInt64 = 0
        var state: UInt8 = 0
        var acked = false
    }

    @Test("every element starts as given; written in place; filled again")
    func readWriteFill() {
        let t = FixedTable(repeating: Record(sequence: 7), count: 4)
        #expect(t.count == 4)
        #expect((0..<4).allSatisfy { t[$0] == Record(sequence: 7) })
        t[2].acked = true
        t[3] = Record(sequence: 9, state: 2)
        #expect(t[2] == Record(sequence: 7, acked: true) && t[3].sequence == 9 && t[0] == Record(sequence: 7))
        t.fill(with: Record())
        #expect((0..<4).allSatisfy { t[$0] == Record() })
    }

    @Test("a table held in a class is written through its let, and replaced whole")
    func inAClass() {
        final class Owner {
            let fixed = FixedTable<UInt32>(repeating: 0, count: 8)
            var replaced = FixedTable<UInt64>(repeating: .max, count: 0)
        }
        let o = Owner()
        o.fixed[5] = 42
        #expect(o.fixed[5] == 42 && o.fixed[4] == 0)
        #expect(o.replaced.count == 0)
        o.replaced = FixedTable(repeating: .max, count: 3)
        o.replaced[1] = 1
        #expect(o.replaced.count == 3 && o.replaced[1] == 1 && o.replaced[2] == .max)
    }

    @Test("an empty table holds nothing")
    func empty() {
        let t = FixedTable<Int>(repeating: 1, count: 0)
        #expect(t.count == 0)
    }

    @Test("an index past the end traps")
    func pastTheEnd() async {
        await #expect(processExitsWith: .failure) {
            let t = FixedTable<UInt32>(repeating: 0, count: 4)
            _ = t[4]
        }
        await #expect(processExitsWith: .failure) {
            let t = FixedTable<UInt32>(repeating: 0, count: 4)
            t[-1] = 1
        }
    }
}
