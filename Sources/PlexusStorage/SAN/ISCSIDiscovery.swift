import CPlexusISCSI

/// What an iSCSI portal offers: one target, the portals it is reached at, and its LUNs.
public struct ISCSIOffer: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The target's name (`iqn.…`).
    public var target: String
    /// `host:port,tpgt` as the portal announced them.
    public var portals: [String]
    /// The LUNs REPORT LUNS listed (a target may list LUN 0 as its controller).
    public var luns: [Int]
    /// What READ CAPACITY(16) said of each LUN that answered it (a controller, such as tgtd's
    /// LUN 0, does not: it is storage of no size and is left out).
    public var capacities: [ISCSICapacity] = []

    /// The URL of LUN `lun` of this target through `portal` (`host:port`).
    public func url(portal: String, lun: Int) -> String { "iscsi://\(portal)/\(target)/\(lun)" }

    public var description: String { "\(target) at \(portals.joined(separator: ", ")): LUNs \(luns)" }
}

/// A LUN's geometry, as READ CAPACITY(16) gives it.
public struct ISCSICapacity: Sendable, Hashable, Codable {
    public var lun: Int
    /// Logical blocks (the last LBA + 1).
    public var blocks: UInt64
    /// Bytes per logical block.
    public var blockSize: Int
    /// The LUN's size in bytes.
    public var bytes: UInt64 { blocks &* UInt64(blockSize) }

    public init(lun: Int, blocks: UInt64, blockSize: Int) {
        self.lun = lun
        self.blocks = blocks
        self.blockSize = blockSize
    }
}

/// SAN discovery at a control node ("Configuration Component"): iSCSI SendTargets on a portal,
/// then REPORT LUNS and READ CAPACITY(16) on each target it names. Synchronous: for the control plane (set-up, an
/// operator's command), never the engine thread.
public enum ISCSIDiscovery {
    /// Every target `portal` (`host[:port]`) offers, with its LUNs.
    /// - Throws: ``ISCSIError`` naming the portal (or the target whose LUNs could not be listed).
    public static func discover(portal: String, initiator: String = "iqn.2026-12.org.plexus:discovery")
        throws(ISCSIError) -> [ISCSIOffer]
    {
        // The portal checked as a URL would be (host, port), with a placeholder target.
        let probe = try ISCSIURL("iscsi://\(portal)/iqn.discovery/0")
        if let why = PortalProbe.failure(probe) { throw .cannotLogIn(portal, reason: why) }
        guard let c = iscsi_create_context(initiator) else { throw .resources(portal, reason: "iscsi_create_context failed") }
        defer { iscsi_destroy_context(c) }
        iscsi_set_session_type(c, ISCSI_SESSION_DISCOVERY)
        iscsi_set_header_digest(c, ISCSI_HEADER_DIGEST_NONE_CRC32C)
        iscsi_set_timeout(c, 10)
        guard iscsi_connect_sync(c, probe.portal) == 0, iscsi_login_sync(c) == 0 else {
            throw .cannotLogIn(portal, reason: "discovery session: \(ISCSISession.error(c))")
        }
        guard let list = iscsi_discovery_sync(c) else {
            throw .cannotLogIn(portal, reason: "SendTargets: \(ISCSISession.error(c))")
        }
        var offers: [ISCSIOffer] = []
        var a: UnsafeMutablePointer<iscsi_discovery_address>? = list
        while let address = a {
            var portals: [String] = []
            var p = address.pointee.portals
            while let tp = p {
                portals.append(String(cString: tp.pointee.portal))
                p = tp.pointee.next
            }
            offers.append(ISCSIOffer(target: String(cString: address.pointee.target_name), portals: portals, luns: [],
                                     capacities: []))
            a = address.pointee.next
        }
        iscsi_free_discovery_data(c, list)
        _ = iscsi_logout_sync(c)
        for i in offers.indices {
            (offers[i].luns, offers[i].capacities) = try reportLUNs(portal: probe.portal, target: offers[i].target,
                                                                    initiator: initiator)
        }
        return offers
    }

    /// REPORT LUNS on `target` through `portal`, then READ CAPACITY(16) on each LUN listed, in
    /// one session.
    static func reportLUNs(portal: String, target: String, initiator: String)
        throws(ISCSIError) -> (luns: [Int], capacities: [ISCSICapacity])
    {
        guard let c = iscsi_create_context(initiator) else { throw .resources(target, reason: "iscsi_create_context failed") }
        defer { iscsi_destroy_context(c) }
        iscsi_set_targetname(c, target)
        iscsi_set_session_type(c, ISCSI_SESSION_NORMAL)
        iscsi_set_header_digest(c, ISCSI_HEADER_DIGEST_NONE_CRC32C)
        iscsi_set_timeout(c, 10)
        guard iscsi_connect_sync(c, portal) == 0, iscsi_login_sync(c) == 0 else {
            throw .cannotLogIn("\(target) at \(portal)", reason: ISCSISession.error(c))
        }
        var raw = [UInt16](repeating: 0, count: 1024)
        let n = plx_iscsi_report_luns(c, &raw, Int32(raw.count))
        guard n >= 0 else {
            let why = ISCSISession.error(c)
            _ = iscsi_logout_sync(c)
            throw .cannotLogIn("\(target) at \(portal)", reason: "REPORT LUNS: \(why)")
        }
        // libiscsi gives each LUN's first two bytes in host order; with peripheral or flat
        // addressing the LUN is their low 14 bits.
        let luns = raw.prefix(Int(min(n, 1024))).map { Int($0 & 0x3FFF) }.sorted()
        var capacities: [ISCSICapacity] = []
        for lun in luns {
            var blocks: UInt64 = 0
            var blockSize: UInt32 = 0
            // The first command to a LUN after a login may get UNIT ATTENTION (power on or
            // reset), which the answer clears: asked up to three times.
            var answered = false
            for _ in 0..<3 where !answered {
                answered = plx_iscsi_read_capacity16(c, Int32(lun), &blocks, &blockSize) == 0
            }
            guard answered, blocks > 0, blockSize >= 512, blockSize <= 65536 else { continue }
            capacities.append(ISCSICapacity(lun: lun, blocks: blocks, blockSize: Int(blockSize)))
        }
        _ = iscsi_logout_sync(c)
        return (luns, capacities)
    }
}
