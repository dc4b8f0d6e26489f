import Foundation
import PlexusCore
import PlexusTestSupport
import PlexusRCLAN
import Testing

@Suite("Redundant VIs with small pools and small peer MTUs", .serialized, .requiresIOUring)
struct RVISmallPoolTests {
    @Test("credits count the segments a peer's smaller MTU cuts frames into: the credit is smaller and the receiver is not overrun")
    func creditsForPeerMTU() throws {
        // 512 KiB socket buffers (256 KiB asked): node 2's port takes whole frames, node 1's
        // adapters only 1500-byte datagrams, so node 1's frames reach node 2 in 12 segments each.
        let pair = try RVIPair(seed: 22, minimumSize: 8_000) {
            $0.socketBufferBytes = 256 << 10
            if $0.name == "node1" { $0.pathMTU = 1500 }
        }
        defer { _ = pair.stop() }
        let full = try pair.statistics(pair.two).credit
        // Node 2 opens its RVI again, knowing node 1's MTU on both fabrics.
        try pair.two.runAndWait { e in
            let layer = RCLAN.on(e)!
            layer.close(RVI(id: 0))
            var p = pair.path(from: pair.two, to: pair.one)
            p.mtuA = 1500
            p.mtuB = 1500
            (layer.delegate as! MessageStream).rvi = try layer.open(p)
        }
        // Node 2's RVI starts over in a new epoch: node 1 must have heard it before it sends,
        // or its first messages would be addressed to node 2's old self (dropped there) and then
        // failed when node 1 learns of the restart, as the layer does for a restarted peer.
        let epoch = try pair.statistics(pair.two).epoch
        #expect(waitUntil(seconds: 10) { (try? pair.statistics(pair.one).peerEpoch) == epoch },
                "node 1 did not hear node 2's new epoch")
        let reduced = try pair.statistics(pair.two).credit
        print("RVI credits with 512 KiB socket buffers: \(full) frames from a peer with the port's MTU, \(reduced) from one with MTU 1500")
        #expect(reduced < full && reduced >= 1)
        let count: UInt64 = 3_000
        try pair.send(count, from: pair.one)
        let done = waitUntil(seconds: 60) { pair.streamTwo.read().delivered == count }
        let overruns = try pair.two.runAndWait { e in e.receiveOverruns(.a) + e.receiveOverruns(.b) }
        print("RVI credits for MTU 1500: \(count) messages of 8000 to 16896 bytes, \(overruns) receive overruns at node 2")
        #expect(done)
        expectClean(pair.streamTwo.read(), count, "node 2 received")
        #expect(overruns == 0)
    }

    @Test("two ends whose send windows could hold every frame of their pools still acknowledge each other: large messages both ways complete",
          arguments: [(8_000, FrameLayout.maxPayload), (4_096, 4_096)])
    func windowsAsLargeAsThePool(sizes: (Int, Int)) throws {
        // 256 pool frames, 256-frame send windows and a 1500-byte path MTU (frames travel as
        // segments, reassembled in pool frames), with loss and reordering on both fabrics so
        // that frames are held out of order: without frames kept back from messages and from
        // frames held out of order, both ends fill their pools, have no frame left to reassemble
        // the next frame in order or to acknowledge with, and stall.
        let count: UInt64 = 3_000
        let pair = try RVIPair(seed: 256, minimumSize: sizes.0, maximumSize: sizes.1) {
            $0.poolFrames = 256
            $0.pathMTU = 1500
        }
        for t in [pair.one, pair.two] {
            try pair.faults(t, .a, FaultPlan(seed: 11, dropPercent: 1, reorderPercent: 5))
            try pair.faults(t, .b, FaultPlan(seed: 12, dropPercent: 1, reorderPercent: 5))
        }
        try pair.send(count, from: pair.one)
        try pair.send(count, from: pair.two)
        let done = waitUntil(seconds: 60) {
            pair.streamOne.read().delivered == count && pair.streamTwo.read().delivered == count
                && pair.streamOne.read().ackedThrough == count && pair.streamTwo.read().ackedThrough == count
        }
        let r1 = pair.streamOne.read(), r2 = pair.streamTwo.read()
        let shed = try pair.statistics(pair.one).outOfOrderShed + pair.statistics(pair.two).outOfOrderShed
        _ = pair.stop()
        print("Small pools: seed 256, 2 × \(count) messages of \(sizes.0) to \(sizes.1) bytes with 256-frame pools, path MTU 1500, "
              + "1 % loss and 5 % reordering on both fabrics; delivered \(r2.delivered) and \(r1.delivered), "
              + "\(shed) frames held out of order let go for want of pool frames")
        #expect(done)
        expectClean(r1, count, "node 1 receiving")
        expectClean(r2, count, "node 2 receiving")
    }
}
