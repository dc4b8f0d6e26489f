import PlexusCore
import PlexusStorage

extension PlatformDefinition {
    /// The definition file's `discovery` field:
    /// `{"portals": ["host[:port]", …], "directories": ["/abs/dir", …], "everySeconds": N}`,
    /// each key optional (`everySeconds` 60 by default, 0 for no schedule), no other key.
    /// Errors name the field (`discovery.portals[1]: …`).
    static func discovery(_ v: Any) throws(PlexusError) -> StorageDiscoveryConfiguration {
        func bad(_ s: String) -> PlexusError { PlexusError(.configuration, "discovery\(s)") }
        guard let o = v as? [String: Any] else {
            throw bad(": expected {\"portals\": [...], \"directories\": [...], \"everySeconds\": N}")
        }
        let known: Set<String> = ["portals", "directories", "everySeconds"]
        if let unknown = o.keys.filter({ !known.contains($0) }).sorted().first {
            throw bad(".\(unknown): unknown field (the fields are directories, everySeconds, portals)")
        }
        func strings(_ key: String) throws(PlexusError) -> [String] {
            guard let x = o[key] else { return [] }
            guard let a = x as? [Any] else { throw bad(".\(key): expected an array of strings") }
            var out: [String] = []
            for (i, e) in a.enumerated() {
                guard let s = e as? String else { throw bad(".\(key)[\(i)]: expected a string") }
                out.append(s)
            }
            return out
        }
        var c = StorageDiscoveryConfiguration(portals: try strings("portals"), directories: try strings("directories"))
        if let x = o["everySeconds"] {
            // As the file's other numbers are read (JSON's 0 and 1 are also Bool here).
            guard !(x is Bool && !(x is Int)), let n = x as? Int else { throw bad(".everySeconds: expected a whole number of seconds") }
            c.everySeconds = n
        }
        do {
            try c.validate()
        } catch {
            throw bad(".\(error)")
        }
        return c
    }
}
