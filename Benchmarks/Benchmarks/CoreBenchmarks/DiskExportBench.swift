// A processor's disk under the allocation gate: an NBD client on the benchmark's thread, the
// processor's NBD server (its connection's reader and writer threads), the lane to the
// processor's engine, the initiator and host adapter, the command and data RVIs on loopback,
// and a control node's storage target over a 4 MiB file on the engine's ring. Each item is an
// NBD WRITE of 4 KiB then a READ of it: the payload goes from the socket into a shared slot, is
// RDMA-written to the control node, written to the file, read back, RDMA-written into the slot,
// and sent to the socket from there. The process-wide malloc counter covers every thread.

import Foundation
import PlexusCore
import PlexusRCLAN
import PlexusStorage
import Synchronization

final class DiskExportStack: @unchecked Sendable {
    let processor: EngineThread
    let control: EngineThread
    let server: NBDServer
    let dir: String

    init() throws {
        let image = benchImage()
        dir = image.dir
        var pc = EngineConfiguration.loopback(node: 1)
        pc.name = "disk-processor"
        var cc = EngineConfiguration.loopback(node: 2)
        cc.name = "disk-control"
        let adapter = HostAdapter(maxCommands: 8)
        let initiator = StorageInitiator(adapters: [adapter], maxCommands: 8)
        let exporter = try VirtualDiskExporter(initiator: initiator, lanes: 1, depth: 4, slotSize: 64 * 1024)
        let services = SendableBox((adapter, initiator, exporter))
        processor = try EngineThread.start(pc) { RCLAN(delegate: services.value.2) }
        control = try EngineThread.start(cc) { RCLAN(delegate: try! StorageTarget(slots: 4, slotSize: 64 * 1024, queueDepth: 8)) }
        func rviPath(_ to: EngineThread, _ local: UInt32, _ remote: UInt32) -> RVIPath {
            RVIPath(localA: local, localB: local, peerA: FabricAddress(to.info.ports[0].address)!,
                    peerB: FabricAddress(to.info.ports[1].address)!, remoteA: remote, remoteB: remote)
        }
        let toProcessor = (rviPath(processor, 1, 1), rviPath(processor, 2, 2))
        let toControl = (rviPath(control, 1, 1), rviPath(control, 2, 2))
        let map = [StorageMapping(target: 0, lun: 0, path: image.file)]
        try control.runAndWait { e in
            let layer = RCLAN.on(e)!
            let target = layer.delegate as! StorageTarget
            try target.addProcessor(command: try layer.open(toProcessor.0), data: try layer.open(toProcessor.1), map: map,
                                    layer: layer)
        }
        let export = try processor.runAndWait { e -> NBDExport in
            let layer = RCLAN.on(e)!
            let (adapter, initiator, exporter) = services.value
            layer.host(adapter)
            layer.host(initiator)
            adapter.setRVIs(command: try layer.open(toControl.0, service: adapter), data: try layer.open(toControl.1, service: adapter))
            try exporter.attach(layer: layer)
            return exporter.export(VirtualDisk(name: "", target: 0, lun: 0,
                                               geometry: BlockGeometry(blockSize: 512, blockCount: 8192, alignment: 512)))
        }
        server = NBDServer(socketPath: dir + "/nbd.sock", exports: [export])
        try server.start()
    }

    func stop() {
        server.stop()
        processor.stopAndWait()
        control.stopAndWait()
        removeBenchImage(dir)
    }
}

/// Holds engine-thread objects made before their engine starts, for the closures that run there.
final class SendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

func diskExportBench() throws -> StorageBed {
    let stack = try DiskExportStack()
    return NBDBench(socket: stack.dir + "/nbd.sock") { stack.stop() }
}
