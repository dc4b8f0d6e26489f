@testable import PlexusCore
import Testing

@Suite("Index stack (free lists of preallocated records)")
struct IndexStackTests {
    @Test("every index once, lowest first; given back, taken again; empty says so")
    func popAndPush() {
        var s = IndexStack(capacity: 4)
        #expect(s.count == 4 && !s.isEmpty)
        var taken: [Int] = []
        while let i = s.pop() { taken.append(i) }
        #expect(taken == [0, 1, 2, 3] && s.isEmpty && s.pop() == nil)
        s.push(2)
        s.push(0)
        #expect(s.pop() == 0 && s.pop() == 2 && s.pop() == nil)
    }

    @Test("a zero-capacity stack is empty")
    func zero() {
        var s = IndexStack(capacity: 0)
        #expect(s.isEmpty && s.pop() == nil)
    }
}
