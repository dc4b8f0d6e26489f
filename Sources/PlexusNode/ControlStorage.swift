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

    public init(maps: [NodeNumber: [StorageMapping]], slots: Int = 16, slotSize: Int = 1 << 20) {
        self.maps = maps
        self.slots = slots
        self.slotSize = slotSize
    }
}

/// A control node's storage target and which processor is which, on the engine thread: it opens
/// the two storage RVIs to every processing node of the plan (``VINumbering``), serves each with
/// its map, and moves a map with its personality when a failover moves it.
final class ControlStorage {
    let target: StorageTarget
    var maps: [NodeNumber: [StorageMapping]]
    /// The target's processor index of each processing node.
    var processors: [NodeNumber: Int] = [:]

    init(target: StorageTarget, maps: [NodeNumber: [StorageMapping]]) {
        self.target = target
        self.maps = maps
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
        processors[node.node] = try target.addProcessor(command: command, data: data, map: maps[node.node] ?? [], layer: layer)
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
        if let p = processors[spare] {
            do { try target.setMap(ofProcessor: p, map, layer: layer) } catch { problems.append("node \(spare): \(error)") }
        }
        if let p = processors[failed] {
            do { try target.setMap(ofProcessor: p, [], layer: layer) } catch { problems.append("node \(failed): \(error)") }
        }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }
}
