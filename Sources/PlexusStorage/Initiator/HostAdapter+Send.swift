import PlexusCore
import PlexusRCLAN

// What a host adapter posts: CMDs on the command RVI, and for each BUF the RDMA WRITEs of its
// segment and a TRAN behind them on the data RVI. A full window stops a step where it is; the
// next turn resumes it.

extension HostAdapter {
    /// Posts slot `i`'s CMD.
    func postCommand(_ i: Int, layer: RCLAN) {
        guard let rvi = command else { return }
        if send(.command(slots[i].command), on: rvi, layer: layer) { slots[i].sent = true }
    }

    /// Serves slot `i`'s owed BUFs, lowest index first: RDMA WRITEs of at most
    /// ``PlexusRCLAN/RCLAN/maxRDMAWrite`` bytes, then the TRAN.
    func answerBuffers(_ i: Int, layer: RCLAN) {
        guard let rvi = data, let memory else { return }
        while slots[i].buffersOwed != 0 {
            let k = slots[i].buffersOwed.trailingZeroBitCount
            let seg = slots[i].command.segments[k]
            let buf = buffers[i * SegmentList.capacity + k]
            let length = Int(seg.length)
            while slots[i].progress < length {
                let done = slots[i].progress
                let n = min(RCLAN.maxRDMAWrite, length - done)
                guard let src = memory.bytes(at: Int(seg.offset) + done, length: n) else { return }
                do throws(RVISendError) {
                    try layer.rdmaWrite(UnsafeRawBufferPointer(src).bytes, on: rvi, region: buf.key,
                                        offset: buf.offset + UInt64(done))
                } catch {
                    return
                }
                counters.rdmaWrites += 1
                slots[i].progress = done + n
            }
            let c = slots[i].command
            let t = StorageTransfer(sequence: c.sequence, target: c.target, lun: c.lun, index: UInt32(k),
                                    length: seg.length)
            guard send(.transfer(t), on: rvi, layer: layer) else { return }
            counters.buffersAnswered += 1
            slots[i].buffersOwed &= ~(1 << UInt32(k))
            slots[i].progress = 0
        }
    }

    /// Encodes `message` into the scratch buffer and posts it; false when the RVI cannot take it now.
    func send(_ message: StorageMessage, on rvi: RVI, layer: RCLAN) -> Bool {
        let n: Int
        do throws(StorageMessageError) { n = try message.encode(into: scratch) } catch { return false }
        do throws(RVISendError) {
            try layer.send(UnsafeRawBufferPointer(rebasing: scratch[..<n]).bytes, on: rvi)
        } catch {
            return false
        }
        return true
    }
}
