import PlexusLAN
import Testing

@Suite("Bounded logs")
struct BoundedLogTests {
    @Test("the last lines are kept, the oldest dropped; a reader that remembers the total learns what it missed")
    func bounded() {
        var log = BoundedLog(label: "test", capacity: 3)
        #expect(log.isEmpty && log.total == 0)
        for i in 1...2 { log.append("line \(i)") }
        #expect(Array(log) == ["line 1", "line 2"] && log.dropped == 0)
        let seen = log.total
        for i in 3...7 { log.append("line \(i)") }
        #expect(Array(log) == ["line 5", "line 6", "line 7"])
        #expect(log.total == 7 && log.dropped == 4 && log.count == 3)
        let (lines, missed) = log.since(seen)
        #expect(lines == ["line 5", "line 6", "line 7"] && missed == 2)
        #expect(log.since(log.total).lines.isEmpty)
        #expect(log.since(6) == (["line 7"], 0))
        #expect(log.contains("line 6") && log.last == "line 7")
    }
}
