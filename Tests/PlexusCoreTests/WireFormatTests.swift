import PlexusCore
import PlexusTestSupport
import Testing

@Suite("Wire format")
struct WireFormatTests {
    static let samples: [FrameHeader] = [
        FrameHeader(type: .data, destinationVI: 1, sourceVI: 2, payloadLength: 0),
        FrameHeader(type: .data, destinationVI: 16383, sourceVI: 9, epoch: 7, payloadLength: 16896,
                    sequence: .max, acknowledgement: 1 << 40),
        FrameHeader(type: .data, flags: .segment, destinationVI: 3, sourceVI: 4, payloadLength: 1400, key: 99,
                    messageLength: 16896, segmentOffset: 1400),
        FrameHeader(type: .rdmaWrite, flags: .immediate, destinationVI: 5, sourceVI: 6, payloadLength: 100,
                    key: 0xdead_b001, immediate: 0xfeed_f00d, remoteOffset: 1 << 33),
        FrameHeader(type: .rdmaNak, destinationVI: 5, sourceVI: 6, payloadLength: 0, key: 1, immediate: 3,
                    remoteOffset: 77),
    ]

    @Test("every header round-trips through its 64 bytes", arguments: samples)
    func roundTrip(header: FrameHeader) {
        var datagram = header.bytes
        #expect(datagram.count == FrameLayout.headerSize)
        datagram += [UInt8](repeating: 0xAB, count: Int(header.payloadLength))
        #expect(FrameHeader.decode(datagram) == .success(header))
    }

    @Test("the layout is big-endian at the documented offsets")
    func layout() {
        let h = FrameHeader(type: .rdmaWrite, flags: .immediate, destinationVI: 0x0102_0304, sourceVI: 0x0506_0708,
                            epoch: 0x090A_0B0C, payloadLength: 0, sequence: 0x1112_1314_1516_1718,
                            acknowledgement: 0x2122_2324_2526_2728, key: 0x3132_3334, immediate: 0x4142_4344,
                            remoteOffset: 0x5152_5354_5556_5758)
        let b = h.bytes
        #expect(Array(b[0..<8]) == [0x50, 0x4C, 4, 2, 0, 1, 0, 64])
        #expect(Array(b[8..<16]) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Array(b[16..<20]) == [9, 10, 11, 12])
        #expect(Array(b[24..<32]) == [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18])
        #expect(Array(b[40..<48]) == [0x31, 0x32, 0x33, 0x34, 0x41, 0x42, 0x43, 0x44])
        #expect(Array(b[48..<56]) == [0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58])
    }

    /// Each malformed case: what to change in a good datagram, and the error it must give.
    static let malformed: [(String, @Sendable (inout [UInt8]) -> Void, FrameDecodeError)] = [
        ("empty", { $0 = [] }, .truncated),
        ("63 bytes", { $0.removeLast($0.count - 63) }, .truncated),
        ("bad magic", { $0[0] = 0x00 }, .badMagic),
        ("version 1 (before the RVI flags)", { $0[2] = 1 }, .unsupportedVersion),
        ("version 2 (before the overrun counts in RVI control frames)", { $0[2] = 2 }, .unsupportedVersion),
        ("version 3 (before the rdma flag)", { $0[2] = 3 }, .unsupportedVersion),
        ("version 5", { $0[2] = 5 }, .unsupportedVersion),
        ("version 0", { $0[2] = 0 }, .unsupportedVersion),
        ("type 0", { $0[3] = 0 }, .unknownType),
        ("type 200", { $0[3] = 200 }, .unknownType),
        ("unknown flag", { $0[4] = 0x80 }, .badFlags),
        ("unknown flag bit 6", { $0[5] = 0x40 }, .badFlags),
        ("rdma without sequenced", { $0[5] = 0x20 }, .badFlags),
        ("rdma and coalesced together", { $0[5] = 0x2C }, .badFlags),
        ("rdma and control together", { $0[5] = 0x34 }, .badFlags),
        ("immediate on data", { $0[5] = 1 }, .badFlags),
        ("coalesced without sequenced", { $0[5] = 0x08 }, .badFlags),
        ("control without sequenced", { $0[5] = 0x10 }, .badFlags),
        ("coalesced and control together", { $0[5] = 0x1C }, .badFlags),
        ("sequenced on an RDMA WRITE", { $0[3] = 2; $0[5] = 0x04 }, .badFlags),
        ("header length 63", { $0[7] = 63 }, .badHeaderLength),
        ("header length 128", { $0[7] = 128 }, .badHeaderLength),
        ("payload length larger than datagram", { $0[23] = $0[23] &+ 1 }, .badPayloadLength),
        ("payload shorter than claimed", { $0.removeLast() }, .badPayloadLength),
        ("payload above 16896", {
            $0 += [UInt8](repeating: 0, count: 16897 - 10)
            $0[20] = 0; $0[21] = 0; $0[22] = 0x42; $0[23] = 0x01
            $0[56] = 0; $0[57] = 0; $0[58] = 0x42; $0[59] = 0x01
        }, .badPayloadLength),
        ("message length differs from payload (unsegmented)", { $0[59] = 99 }, .badSegment),
        ("segment offset set without segment flag", { $0[63] = 1 }, .badSegment),
    ]

    @Test("malformed datagrams are rejected with the right reason", arguments: malformed.indices)
    func rejects(index: Int) {
        let (_, mutate, expected) = Self.malformed[index]
        var d = FrameHeader(type: .data, destinationVI: 1, sourceVI: 2, payloadLength: 10).bytes
            + [UInt8](repeating: 1, count: 10)
        mutate(&d)
        #expect(FrameHeader.decode(d) == .failure(expected))
    }

    @Test("segment fields are bounds-checked")
    func segments() {
        func seg(offset: UInt32, payload: UInt32, message: UInt32) -> Result<FrameHeader, FrameDecodeError> {
            let h = FrameHeader(type: .data, flags: .segment, destinationVI: 1, sourceVI: 1, payloadLength: payload,
                                messageLength: message, segmentOffset: offset)
            return FrameHeader.decode(h.bytes + [UInt8](repeating: 0, count: Int(payload)))
        }
        #expect((try? seg(offset: 100, payload: 100, message: 200).get()) != nil)
        #expect(seg(offset: 101, payload: 100, message: 200) == .failure(.badSegment))
        #expect(seg(offset: 0, payload: 100, message: 16897) == .failure(.badSegment))
        #expect(seg(offset: 0, payload: 0, message: 10) == .failure(.badSegment))
        #expect(seg(offset: .max, payload: 10, message: 100) == .failure(.badSegment))
        let segOnRDMA = FrameHeader(type: .rdmaWrite, flags: .segment, destinationVI: 1, sourceVI: 1, payloadLength: 0)
        #expect(FrameHeader.decode(segOnRDMA.bytes) == .failure(.badFlags))
    }

    @Test("an RDMA offset that would overflow is rejected")
    func rdmaOverflow() {
        let h = FrameHeader(type: .rdmaWrite, destinationVI: 1, sourceVI: 1, payloadLength: 8, remoteOffset: .max - 3)
        #expect(FrameHeader.decode(h.bytes + [UInt8](repeating: 0, count: 8)) == .failure(.badRemoteOffset))
    }

    /// Seeded mutation fuzzing of the decoder: it must never crash, and whatever it accepts must
    /// re-encode to the same header bytes. (The libFuzzer target in Fuzz/ does the same, guided.)
    @Test("seeded fuzzing: 200k mutated datagrams, no crash, accepted headers re-encode identically")
    func fuzz() {
        var rng = SplitMix64(seed: 0x9E37_79B9_7F4A_7C15)
        var accepted = 0, rejected = 0
        let seeds = Self.samples.map { $0.bytes + [UInt8](repeating: 7, count: Int($0.payloadLength)) }
        for i in 0..<200_000 {
            var d = seeds[i % seeds.count]
            let mutations = Int(rng.next() % 6) + 1
            for _ in 0..<mutations {
                switch rng.next() % 5 {
                case 0 where !d.isEmpty: d[Int(rng.next() % UInt64(d.count))] = UInt8(truncatingIfNeeded: rng.next())
                case 1 where !d.isEmpty: d.removeLast(Int(rng.next() % UInt64(min(d.count, 80))))
                case 2: d += [UInt8](repeating: UInt8(truncatingIfNeeded: rng.next()), count: Int(rng.next() % 100))
                case 3 where d.count > 8: d[Int(rng.next() % 64) % d.count] ^= 1 << (rng.next() % 8)
                default: break
                }
            }
            switch FrameHeader.decode(d) {
            case .success(let h):
                accepted += 1
                #expect(h.bytes == Array(d[0..<64]))
                #expect(Int(h.payloadLength) == d.count - 64)
            case .failure:
                rejected += 1
            }
        }
        #expect(accepted + rejected == 200_000)
        #expect(rejected > 0 && accepted > 0)
    }
}
