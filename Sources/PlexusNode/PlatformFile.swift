import Foundation
import PlexusCore
import PlexusLAN
import PlexusStorage

// MARK: - The definition file
//
// What `plexus control` and `plexus node` read: the same JSON file on every node.
//
//     {
//       "serial": 1,
//       "controlNodes": [1, 2],
//       "processingNodes": [3, 4, 5],
//       "vlans": { "10": [3, 4], "20": [4, 5] },
//       "promiscuous": { "10": [3] },
//       "mtu": 16872,
//       "fabricA": "127.0.1.{node}:7000",
//       "fabricB": "127.0.2.{node}:7000",
//       "pathMTU": 65536,
//       "spares": [6],
//       "addresses": { "4": ["10=10.10.0.4/24", "20=10.20.0.4/24"] },
//       "workloads": { "4": "exec python3 -m http.server -b 10.10.0.4 8080" },
//       "storage": { "4": ["0:0=/var/lib/plexus/web.img", "0:1=/var/lib/plexus/iso.img:ro"] },
//       "discovery": { "portals": ["san:3260"], "directories": ["/var/lib/plexus/images"], "everySeconds": 60 },
//       "failoverServers": [ { "name": "failover", "virtualNodes": [7] },
//                            { "name": "backup", "virtualNodes": [8] } ]
//     }
//
// Only `controlNodes`, `processingNodes` and `vlans` are required. `spares` (the free pool),
// `addresses` (per node, `VLAN=a.b.c.d/len`), `workloads` (per node, a shell command) and
// `failoverServers` (seed 002: the failover server, then the backup server, each with the
// virtual nodes it hosts) make the personalities the control nodes fail over. `storage` (per
// node, `TARGET:LUN=PATH`, `:ro` for read-only) is each personality's disks; `discovery` says
// where the control nodes find the storage pool (PlatformFile+Discovery.swift). Every node's fabric
// addresses follow from its number by the two templates, so a node finds the control nodes, and
// the control nodes find every node, without being told ("Network Architecture": the paths are
// set up by rule).

extension PlatformDefinition {
    /// The fields a definition file may hold; any other is refused (a misspelt field would
    /// otherwise be ignored in silence).
    public static let fileFields: Set<String> = [
        "serial", "controlNodes", "processingNodes", "vlans", "promiscuous", "mtu", "fabricA", "fabricB", "pathMTU",
        "spares", "addresses", "workloads", "failoverServers", "storage", "discovery",
    ]

    /// Reads and checks a definition file. Errors name the file and the field.
    public static func load(path: String) throws(PlexusError) -> PlatformDefinition {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PlexusError(.configuration, "\(path): cannot read the platform definition")
        }
        do {
            return try parse(data)
        } catch {
            throw PlexusError(.configuration, "\(path): \(error.message)")
        }
    }

    /// Parses a definition from JSON. Errors name the field.
    public static func parse(_ data: Data) throws(PlexusError) -> PlatformDefinition {
        func bad(_ s: String) -> PlexusError { PlexusError(.configuration, s) }
        guard let any = try? JSONSerialization.jsonObject(with: data), let o = any as? [String: Any] else {
            throw bad("not a JSON object")
        }
        if let unknown = o.keys.filter({ !fileFields.contains($0) }).sorted().first {
            throw bad("unknown field \"\(unknown)\" (the fields are \(fileFields.sorted().joined(separator: ", ")))")
        }
        func int(_ v: Any?, _ field: String) throws(PlexusError) -> Int {
            guard !(v is Bool && !(v is Int)), let i = v as? Int else {
                throw bad("\(field): expected a whole number")
            }
            return i
        }
        // A number no node can have (negative, above u32) is refused as validate() refuses
        // one outside the VI numbering's range.
        func node(_ v: Any?, _ field: String) throws(PlexusError) -> NodeNumber {
            guard let n = NodeNumber(exactly: try int(v, field)) else { throw bad("node numbers are 1...\(VINumbering.maximumNode)") }
            return n
        }
        func nodes(_ v: Any?, _ field: String) throws(PlexusError) -> [NodeNumber] {
            guard let a = v as? [Any] else { throw bad("\(field): expected an array of node numbers") }
            var out: [NodeNumber] = []
            for (i, x) in a.enumerated() { out.append(try node(x, "\(field)[\(i)]")) }
            return out
        }
        func vlanMap(_ v: Any?, _ field: String) throws(PlexusError) -> [VLANID: [NodeNumber]] {
            guard let m = v as? [String: Any] else { throw bad("\(field): expected an object of VLAN number to node numbers") }
            var out: [VLANID: [NodeNumber]] = [:]
            for (k, x) in m {
                guard let n = Int(k), let id = VLANID(n) else { throw bad("\(field).\(k): a VLAN number is 1...4094") }
                out[id] = try nodes(x, "\(field).\(k)")
            }
            return out
        }
        guard o["controlNodes"] != nil else { throw bad("controlNodes: required") }
        guard o["processingNodes"] != nil else { throw bad("processingNodes: required") }
        guard o["vlans"] != nil else { throw bad("vlans: required") }
        var d = PlatformDefinition(controlNodes: try nodes(o["controlNodes"], "controlNodes"),
                                   processingNodes: try nodes(o["processingNodes"], "processingNodes"),
                                   vlans: try vlanMap(o["vlans"], "vlans"))
        if let v = o["promiscuous"] { d.promiscuousAllowed = try vlanMap(v, "promiscuous").mapValues(Set.init) }
        if let v = o["serial"] {
            let s = try int(v, "serial")
            guard (0...0xFFFF).contains(s) else { throw bad("serial: 0...65535") }
            d.serial = UInt16(s)
        }
        if let v = o["mtu"] { d.mtu = try int(v, "mtu") }
        if let v = o["spares"] { d.spares = try nodes(v, "spares") }
        func perNode(_ v: Any, _ field: String) throws(PlexusError) -> [(NodeNumber, Any)] {
            guard let m = v as? [String: Any] else { throw bad("\(field): expected an object of node number to its value") }
            var out: [(NodeNumber, Any)] = []
            for (k, x) in m.sorted(by: { $0.key < $1.key }) {
                guard let n = NodeNumber(k) else { throw bad("\(field).\(k): not a node number") }
                out.append((n, x))
            }
            return out
        }
        if let v = o["addresses"] {
            for (n, x) in try perNode(v, "addresses") {
                guard let list = x as? [Any] else { throw bad("addresses.\(n): expected an array of \"VLAN=a.b.c.d/len\"") }
                var bindings: [AddressBinding] = []
                for (i, e) in list.enumerated() {
                    let parts = (e as? String)?.split(separator: "=", maxSplits: 1).map(String.init) ?? []
                    guard parts.count == 2, let vn = Int(parts[0]), let vlan = VLANID(vn), isIPv4CIDR(parts[1]) else {
                        throw bad("addresses.\(n)[\(i)]: expected \"VLAN=a.b.c.d/len\", e.g. \"10=10.10.0.4/24\"")
                    }
                    bindings.append(AddressBinding(vlan: vlan, cidr: parts[1]))
                }
                d.addresses[n] = bindings
            }
        }
        if let v = o["workloads"] {
            for (n, x) in try perNode(v, "workloads") {
                guard let w = x as? String else { throw bad("workloads.\(n): expected a command line (a string)") }
                d.workloads[n] = w
            }
        }
        if let v = o["storage"] {
            for (n, x) in try perNode(v, "storage") {
                guard let list = x as? [Any] else { throw bad("storage.\(n): expected an array of \"TARGET:LUN=PATH\"") }
                var map: [StorageMapping] = []
                for (i, e) in list.enumerated() {
                    guard let text = e as? String, let m = StorageMapping(entry: text) else {
                        throw bad("storage.\(n)[\(i)]: expected \"TARGET:LUN=PATH\" or \"TARGET:LUN=PATH:ro\", e.g. \"0:0=/var/lib/plexus/disk.img\"")
                    }
                    map.append(m)
                }
                d.storage[n] = map
            }
        }
        if let v = o["discovery"] { d.discovery = try discovery(v) }
        if let v = o["failoverServers"] {
            guard let list = v as? [Any] else { throw bad("failoverServers: expected an array of {\"name\", \"virtualNodes\"}") }
            for (i, e) in list.enumerated() {
                guard let server = e as? [String: Any], let name = server["name"] as? String, Set(server.keys) == ["name", "virtualNodes"] else {
                    throw bad("failoverServers[\(i)]: expected {\"name\": \"...\", \"virtualNodes\": [...]}")
                }
                let virtual = try nodes(server["virtualNodes"], "failoverServers[\(i)].virtualNodes")
                guard virtual.allSatisfy({ (1...VINumbering.maximumNode).contains($0) }) else {
                    throw bad("failoverServers[\(i)].virtualNodes: node numbers are 1...\(VINumbering.maximumNode)")
                }
                d.failoverServers.append(FailoverServer(name: name, virtualNodes: virtual))
            }
        }
        if let v = o["pathMTU"] { d.pathMTU = try int(v, "pathMTU") }
        for (field, keyPath) in [("fabricA", \PlatformDefinition.fabricA), ("fabricB", \PlatformDefinition.fabricB)] {
            guard let v = o[field] else { continue }
            guard let s = v as? String else { throw bad("\(field): expected a string such as \"127.0.1.{node}:7000\"") }
            d[keyPath: keyPath] = s
        }
        do {
            try d.validate()
        } catch {
            throw bad(error.message)
        }
        // A file defines virtual nodes waiting with no personality (one from the platform store
        // may show a virtual node carrying a personality it took over).
        for server in d.failoverServers {
            for v in server.virtualNodes where d.vlans.values.contains(where: { $0.contains(v) }) {
                throw bad("failoverServers: virtual node \(v) is on a VLAN; it waits with no personality")
            }
        }
        return d
    }

    /// Node `n`'s address on both fabrics, from the templates.
    public func address(of n: NodeNumber) -> NodeAddress? {
        func fill(_ t: String) -> FabricAddress? { FabricAddress(t.replacingOccurrences(of: "{node}", with: "\(n)")) }
        guard let a = fill(fabricA), let b = fill(fabricB) else { return nil }
        return NodeAddress(node: n, fabricA: a, fabricB: b)
    }

    /// The control nodes' addresses, in order (index 0 first).
    public func controlAddresses() throws(PlexusError) -> [NodeAddress] {
        var out: [NodeAddress] = []
        for n in controlNodes { out.append(try PlanStore.address(self, n)) }
        return out
    }

    /// An engine configuration for node `n` on its fabric addresses.
    public func engineConfiguration(node n: NodeNumber) throws(PlexusError) -> EngineConfiguration {
        guard let a = address(of: n) else { throw PlexusError(.configuration, "node \(n) has no valid fabric address") }
        var c = EngineConfiguration(name: "node\(n)", fabricA: a.fabricA, fabricB: a.fabricB)
        c.pathMTU = pathMTU
        c.poolFrames = 1024
        c.receiveBuffers = 1024
        return c
    }

    /// Every NIC the definition asks for, in a stable order (by VLAN, then node), each with the
    /// MAC `known` gives it or else a new one from `allocator`.
    func nics(allocator: MACAllocator, known: [NICKey: MACAddress] = [:]) throws(PlexusError) -> [VirtualNICBinding] {
        var out: [VirtualNICBinding] = []
        for v in vlans.keys.sorted() {
            for n in vlans[v]!.sorted() {
                let mac: MACAddress
                if let m = known[NICKey(node: n, vlan: v)] { mac = m } else { mac = try allocator.allocate() }
                out.append(VirtualNICBinding(node: n, mac: mac, vlan: v,
                                             promiscuousAllowed: promiscuousAllowed[v]?.contains(n) ?? false))
            }
        }
        return out
    }
}

/// A NIC's identity apart from its MAC: which node, which VLAN.
struct NICKey: Hashable {
    var node: NodeNumber
    var vlan: VLANID
}

// MARK: - The control nodes' state on disk

/// The MACs the control nodes handed out, kept in a state directory so that a restarted control
/// node (or the second control node, sharing the directory on one host) answers every
/// registration with the same MACs.
///
/// The directory holds `mac-counter` (the ``MACAllocator``'s persistent counter) and
/// `nics.json` (each NIC's node, VLAN and MAC). Resolving a definition takes an exclusive
/// `flock` on `lock`, keeps the MAC of every NIC it already knows, allocates MACs for new ones
/// only, and rewrites `nics.json` atomically. A NIC the definition dropped keeps no MAC: its MAC
/// is retired, never handed out again.
public enum PlanStore {
    public static func resolve(_ d: PlatformDefinition, stateDirectory dir: String) throws(PlexusError) -> LANPlan {
        func fail(_ s: String, _ e: Int32 = errno) -> PlexusError { PlexusError(.system, "\(dir): \(s)", errno: e) }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw PlexusError(.system, "\(dir): cannot create the state directory: \(error.localizedDescription)")
        }
        let lock = open(dir + "/lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw fail("cannot open the lock file") }
        defer { close(lock) }
        guard flock(lock, LOCK_EX) == 0 else { throw fail("cannot lock the state directory") }
        let nicsFile = dir + "/nics.json"
        var known: [NICKey: MACAddress] = [:]
        if let data = FileManager.default.contents(atPath: nicsFile) {
            guard let rows = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
                throw PlexusError(.configuration, "\(nicsFile): not the NIC list this version writes")
            }
            for r in rows {
                guard let n = (r["node"] as? Int).flatMap({ NodeNumber(exactly: $0) }), let v = (r["vlan"] as? Int).flatMap(VLANID.init),
                      let m = (r["mac"] as? String).flatMap(MACAddress.init) else {
                    throw PlexusError(.configuration, "\(nicsFile): a malformed NIC entry \(r)")
                }
                known[NICKey(node: n, vlan: v)] = m
            }
        }
        let allocator = try MACAllocator(serial: d.serial, stateFile: dir + "/mac-counter")
        let nics = try d.nics(allocator: allocator, known: known)
        let rows: [[String: Any]] = nics.map { ["node": Int($0.node), "vlan": Int($0.vlan.rawValue), "mac": $0.mac.description] }
        let data = try! JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
        do {
            try data.write(to: URL(fileURLWithPath: nicsFile), options: .atomic)
        } catch {
            throw PlexusError(.system, "\(nicsFile): cannot write: \(error.localizedDescription)")
        }
        return try d.plan(nics: nics)
    }

    static func address(_ d: PlatformDefinition, _ n: NodeNumber) throws(PlexusError) -> NodeAddress {
        guard let a = d.address(of: n) else { throw PlexusError(.configuration, "node \(n): the fabric templates do not give an address") }
        return a
    }
}
