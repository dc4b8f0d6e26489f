import PlexusCore
import PlexusRCLAN
import Testing

@Suite("RCLAN control payload")
struct RVIControlPayloadTests {
    /// A payload as docs/wire-format.md lays it out.
    static func payload(kinds: UInt8, hears: UInt8, duplicates: UInt32, probe: UInt64, echo: UInt64,
                        overruns: (UInt32, UInt32), blocks: [(UInt64, UInt64)]) -> [UInt8] {
        func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }
        var p: [UInt8] = [kinds, UInt8(blocks.count), hears, 0] + be(duplicates) + be(probe) + be(echo) + be(overruns.0) + be(overruns.1)
        for (a, b) in blocks { p += be(a) + be(b) }
        return p
    }

    @Test("the fields and every SACK block are read as laid out")
    func fields() throws {
        let bytes = Self.payload(kinds: 3, hears: 2, duplicates: 7, probe: 0x0102_0304_0506_0708, echo: 99,
                                 overruns: (5, 1 << 31), blocks: [(10, 12), (20, 25)])
        do {
            let p = bytes.span.bytes
            let parsed = RVIControlPayload(parsing: p)
            let c = try #require(parsed)
            #expect(c.isProbe && c.isEcho && !c.hears(leg: 0) && c.hears(leg: 1))
            #expect(c.duplicates == 7 && c.probeStamp == 0x0102_0304_0506_0708 && c.echoStamp == 99)
            #expect(c.overrunsA == 5 && c.overrunsB == 1 << 31 && c.sackBlocks == 2)
            let (b0, b1) = (c.sackBlock(0, in: p), c.sackBlock(1, in: p))
            #expect(b0 == (10, 12) && b1 == (20, 25))
        }
    }

    /// Whether `bytes` parse as a control payload.
    static func parses(_ bytes: [UInt8]) -> Bool { RVIControlPayload(parsing: bytes.span.bytes) != nil }

    @Test("malformed payloads are refused: short, too many blocks, a length that does not match the count")
    func malformed() {
        let good = Self.payload(kinds: 1, hears: 3, duplicates: 0, probe: 1, echo: 0, overruns: (0, 0), blocks: [(1, 2)])
        #expect(Self.parses(good))
        #expect(!Self.parses(Array(good.prefix(31))))
        #expect(!Self.parses(Array(good.dropLast())))
        #expect(!Self.parses(good + [0]))
        var many = Self.payload(kinds: 0, hears: 3, duplicates: 0, probe: 0, echo: 0, overruns: (0, 0),
                                blocks: Array(repeating: (1, 2), count: 17))
        #expect(!Self.parses(many))
        many[1] = 16
        #expect(!Self.parses(many), "16 blocks announced, 17 present")
    }
}
