import PlexusCore
import PlexusLAN
import PlexusRCLAN
import PlexusStorage

/// What a control node serves as storage ("Control node-side Storage Logic"): each processing
/// node's storage map, by the node that holds the personality now, and the target's sizing.
public struct StorageSettings: Sendable {
    /// The map of each processing node (a node with none reaches no disk).
    public var maps: [NodeNumber: [StorageMapping]]
    /// Staging slots (commands in flight) per processor, and the largest transfer.
    public var slots: Int
    public var slotSize: Int

    /// `slots` × `slotSize` bytes of staging memory per processing node (4 MiB by default; a
    /// processor's slots must not be larger than `slotSize`).
    public init(maps: [NodeNumber: [StorageMapping]], slots: Int = 16, slotSize: Int = 256 * 1024) {
        self.maps = maps
        self.slots = slots
        self.slotSize = slotSize
    }
}

/// A control node's storage target and which processor is which, on the engine thread: it opens
/// the two storage RVIs to every processing node of the plan (``VINumbering``), serves each with
/// its map, and moves a map with its personality when a failover moves it.
///
/// A mapping whose backing cannot be opened (a file, or a LUN on the SAN) does not stop the
/// others: it is left out, and the control node's log names it (``problems``).
final class ControlStorage: RVIDelegate {
    let target: StorageTarget
    var maps: [NodeNumber: [StorageMapping]]
    /// The target's processor index of each processing node.
    var processors: [NodeNumber: Int] = [:]
    /// What could not be served, most recent last.
    var problems: [String] = []
    /// Where problems are told (the virtual LAN server's log).
    var note: (String) -> Void = { _ in }

    /// Each SAN LUN's state when last looked at (processor, target, LUN → up), and when.
    var sanUp: [SANKey: Bool] = [:]
    var sanCheckedAt: UInt64 = 0

    struct SANKey: Hashable {
        var processor: Int
        var target: UInt32
        var lun: UInt32
    }

    init(target: StorageTarget, maps: [NodeNumber: [StorageMapping]]) {
        self.target = target
        self.maps = maps
    }

    /// Once a second: a LUN on the SAN that went down, or came back, is an event in the log
    /// naming the processing node, the (target, LUN) and the SAN's URL ("Configuration
    /// Component": storage that vanished while assigned).
    func layerTurn(_ layer: RCLAN) {
        let now = nowNanos()
        guard now &- sanCheckedAt >= 1_000_000_000 else { return }
        sanCheckedAt = now
        let status = target.sanStatus
        guard !status.isEmpty || !sanUp.isEmpty else { return }
        var seen = Set<SANKey>()
        for s in status {
            let key = SANKey(processor: s.processor, target: s.target, lun: s.lun)
            seen.insert(key)
            let was = sanUp[key]
            sanUp[key] = s.isUp
            guard was != s.isUp, was != nil || !s.isUp else { continue }
            let node = processors.first { $0.value == s.processor }.map { "node \($0.key)" } ?? "processor \(s.processor)"
            let line = s.isUp
                ? "storage: \(node)'s target \(s.target) LUN \(s.lun) (\(s.url)) is up again"
                : "storage: \(node)'s target \(s.target) LUN \(s.lun) (\(s.url)) is DOWN: \(s.lastError ?? "no answer")"
            if !s.isUp {
                problems.append(line)
                if problems.count > 64 { problems.removeFirst() }
            }
            note(line)
        }
        for key in sanUp.keys where !seen.contains(key) { sanUp[key] = nil }
    }

    /// Applies `map` to `node` through `apply` (the target's addProcessor or setMap); an entry
    /// whose backing cannot be opened (a file, or a LUN on the SAN) is left out and named in
    /// the log, and the rest is applied. Other refusals are thrown.
    func serve(_ map: [StorageMapping], node: NodeNumber,
               _ apply: ([StorageMapping]) throws(StorageSetupError) -> Void) throws(StorageSetupError) {
        var map = map
        while true {
            do throws(StorageSetupError) {
                try apply(map)
                return
            } catch .cannotOpen(let path, let reason) where map.contains(where: { $0.path == path }) {
                for m in map where m.path == path {
                    let line = "storage: node \(node)'s target \(m.target) LUN \(m.lun) (\(path)) cannot be served: \(reason)"
                    problems.append(line)
                    if problems.count > 64 { problems.removeFirst() }
                    note(line)
                }
                map.removeAll { $0.path == path }
            }
        }
    }

    /// Takes new maps (the platform store changed): each node whose map differs is served its
    /// new one. A map that cannot be set is named in the log and the old one stays.
    func update(_ new: [NodeNumber: [StorageMapping]], layer: RCLAN) {
        for n in Set(maps.keys).union(new.keys) where maps[n] ?? [] != new[n] ?? [] {
            maps[n] = new[n] ?? []
            guard let p = processors[n] else { continue }
            do {
                try serve(new[n] ?? [], node: n) { (m) throws(StorageSetupError) in try target.setMap(ofProcessor: p, m, layer: layer) }
            } catch {
                note("storage: node \(n)'s new map not set: \(error)")
            }
        }
    }

    /// Opens the storage RVIs to `node` and serves it with its map.
    func add(_ node: NodeAddress, control index: Int, pathMTU: Int, layer: RCLAN) throws {
        guard processors[node.node] == nil else { return }
        let command = try layer.open(NodeAddressBook.path(node, local: VINumbering.storageCommandAtControl(node: node.node),
                                                          remote: VINumbering.storageCommandAtNode(control: index)),
                                     service: target)
        let data = try layer.open(NodeAddressBook.path(node, local: VINumbering.storageDataAtControl(node: node.node),
                                                       remote: VINumbering.storageDataAtNode(control: index)),
                                  service: target)
        try serve(maps[node.node] ?? [], node: node.node) { (m) throws(StorageSetupError) in
            processors[node.node] = try target.addProcessor(command: command, data: data, map: m, layer: layer)
        }
        NodeAddressBook.follow(layer, command, node: node.node, localVI: VINumbering.storageCommandAtControl(node: node.node),
                               remoteVI: VINumbering.storageCommandAtNode(control: index), pathMTU: pathMTU)
        NodeAddressBook.follow(layer, data, node: node.node, localVI: VINumbering.storageDataAtControl(node: node.node),
                               remoteVI: VINumbering.storageDataAtNode(control: index), pathMTU: pathMTU)
    }

    /// A failover moved `failed`'s personality to `spare`: the spare gets its map, the failed
    /// node none (fenced from the personality's disks).
    func moved(from failed: NodeNumber, to spare: NodeNumber, layer: RCLAN) -> String? {
        let map = maps[failed] ?? []
        maps[spare] = map
        maps[failed] = []
        var problems: [String] = []
        var failures: [String] = []
        if let p = processors[spare] {
            do {
                try serve(map, node: spare) { (m) throws(StorageSetupError) in try target.setMap(ofProcessor: p, m, layer: layer) }
            } catch {
                failures.append("node \(spare): \(error)")
            }
        }
        if let p = processors[failed] {
            do { try target.setMap(ofProcessor: p, [], layer: layer) } catch { failures.append("node \(failed): \(error)") }
        }
        return failures.isEmpty ? nil : failures.joined(separator: "; ")
    }
}
