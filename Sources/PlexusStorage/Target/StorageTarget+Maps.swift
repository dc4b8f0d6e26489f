import PlexusCore
import PlexusRCLAN

// The storage map of each processor: made at ``StorageTarget/addProcessor(command:data:map:layer:)``
// and replaced when a personality moves ("Control node-side Storage Logic": the map follows
// the personality to the processor that now holds it).
extension StorageTarget {
    /// Replaces processor `index`'s map with `map`: what a failover does to the spare (it gets
    /// the failed processor's map) and to the failed processor (it gets none, so a processor
    /// that was only slow, not dead, reaches no disk of the personality it lost). The
    /// processor's commands in flight are dropped without a STAT (its adapter times them out
    /// and re-issues them); the old map's files are closed once their I/O completes. On the
    /// engine thread.
    /// - Throws: ``StorageSetupError`` (a file that cannot be opened, a duplicate (target,
    ///   LUN)); the old map then stays in place.
    public func setMap(ofProcessor index: Int, _ map: [StorageMapping], layer: RCLAN) throws(StorageSetupError) {
        guard index >= 0, index < sessions.count else { throw .badParameter("no processor \(index) at this target") }
        var units = try makeUnits(map, processor: index, layer: layer)
        let session = sessions[index]
        abandon(session)
        let old = session.units
        keepStatistics(of: old, in: &units)
        session.units = units
        close(old, layer: layer)
        counters.mapChanges += 1
    }

    /// The processor served over command RVI `command`, if any.
    public func processor(command: RVI) -> Int? { sessions.first { $0.command == command }?.index }

    /// Opens each entry's backing file on the engine's ring, or logs in to its iSCSI LUN (a
    /// path that starts with `iscsi://`: setup, blocks for the login), and makes its logical unit.
    func makeUnits(_ map: [StorageMapping], processor: Int, layer: RCLAN) throws(StorageSetupError) -> [MappedUnit] {
        var units: [MappedUnit] = []
        for m in map {
            guard !units.contains(where: { $0.target == m.target && $0.lun == m.lun }) else {
                close(units, layer: layer)
                throw .duplicateMapping(target: m.target, lun: m.lun)
            }
            let device: any BlockDevice
            let backend: UnitBackend
            if ISCSIURL.isISCSI(m.path) {
                do {
                    let san = try openSAN(m.path, processor: processor, layer: layer)
                    device = san
                    backend = .san(san)
                } catch {
                    close(units, layer: layer)
                    throw error
                }
            } else {
                let file: BlockFile
                do {
                    file = try layer.engine.openBlockFile(m.path, access: m.access == .readOnly ? .readOnly : .readWrite,
                                                          direct: m.direct)
                } catch {
                    close(units, layer: layer)
                    throw .cannotOpen(path: m.path, reason: "\(error)")
                }
                device = EngineFileDevice(file: file, blockSize: m.blockSize)
                backend = .file(file)
            }
            let bs = UInt32(device.geometry.blockSize)
            // One UNMAP releases one range here (``SCSILogicalUnit/unmapStep(list:)``).
            let limits = BlockLimits(maxTransferBlocks: UInt32(slotSize) / bs, optimalTransferBlocks: UInt32(slotSize) / bs,
                                     maxUnmapDescriptors: 1)
            let identity = LogicalUnitIdentity(serial: "T\(m.target)L\(m.lun)P\(processor)",
                                               identifier: UInt64(m.target) << 32 | UInt64(m.lun))
            let unit = SCSILogicalUnit(device: device, identity: identity, lun: m.lun,
                                       readOnly: m.access == .readOnly, limits: limits)
            units.append(MappedUnit(target: m.target, lun: m.lun, unit: unit, backend: backend, path: m.path))
        }
        return units
    }

    /// Closes the units' files (once their I/O completes) and iSCSI sessions.
    func close(_ units: [MappedUnit], layer: RCLAN) {
        for u in units {
            switch u.backend {
            case .file(let f): layer.engine.closeBlockFile(f)
            case .san(let s): closeSAN(s, layer: layer)
            }
        }
    }
}
