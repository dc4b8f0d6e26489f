import PlexusCore
import PlexusRCLAN

extension VirtualEthernet {
    /// Opens the management RVI to each control node (``VINumbering``) and registers with both;
    /// registration is repeated every 100 ms until a control node answers.
    ///
    /// The RVIs are ``RVILiveness/onDemand`` at this end: it is the control node that watches
    /// its processing nodes while they are idle (its probes, answered here, keep this end
    /// hearing it too), and this end judges a control node at heartbeat pace as soon as it
    /// sends it anything.
    public func register(controls: [NodeAddress], layer: RCLAN) throws(PlexusError) {
        for (k, c) in controls.enumerated() {
            let vi = VINumbering.managementAtNode(control: k)
            let remote = VINumbering.managementAtControl(node: node)
            addServer(try layer.open(RVIPath(localA: vi, localB: vi, peerA: c.fabricA, peerB: c.fabricB,
                                             remoteA: remote, remoteB: remote), service: self, liveness: .onDemand))
        }
        registration = .pending
        sendRegistrations(layer)
    }

    func sendRegistrations(_ layer: RCLAN) {
        lastRegister = .now
        let m = ControlMessage.register(node: node).encoded()
        for s in servers { _ = try? layer.send(m, on: s) }
    }

    /// Registers again with one control node after either end of its management RVI started a
    /// new epoch. A node still pending repeats its registration anyway, and a fenced or refused
    /// one has nothing to say.
    func registerAgain(on rvi: RVI, layer: RCLAN) {
        guard registration == .standby || registration == .configured else { return }
        reregistrations += 1
        _ = try? layer.send(ControlMessage.register(node: node).encoded(), on: rvi)
    }

    func apply(_ c: NodeConfiguration, layer: RCLAN) {
        guard c.node == node, registration != .fenced, c.revision >= releasedAt else { return }
        if let have = configuration {
            if c.revision > have.revision {
                reconfigure(to: c, layer: layer)  // a change while it runs (Reconfiguration.swift)
            } else if c.revision == have.revision && !have.sameSetUp(as: c) {
                conflictingConfigurations += 1
            } else if c.revision == have.revision {
                // The second control node's copy: it may have adopted the revision after the
                // first node's requests and reports reached it. Said again; the servers ignore
                // what they have.
                if tookOver && !reportedSteps.isEmpty { pendingReports += reportedSteps }
                for nic in c.personality.nics where nic.promiscuousAllowed && promiscuousNICs.contains(nic.mac) {
                    toServers(.promiscuous(node: node, nic: nic.mac, on: true), layer: layer)
                }
            }
            return
        }
        guard !c.personality.nics.isEmpty else { return }  // a release, and this node holds nothing
        if registration == .standby {
            // A spare taking a failed node's personality over: it reports how far it got.
            tookOver = true
            reportedSteps = []
            events.append("took over a personality: " + c.personality.nics.map { "\($0.mac) on \($0.vlan)" }.joined(separator: ", "))
        }
        configuration = c
        do {
            for nic in c.personality.nics { try addNIC(nic, mtu: c.mtu, layer: layer) }
            for p in c.peers { try openPeer(p, layer: layer) }
            registration = .configured
            onConfigured?(c)
        } catch {
            registrationErrors.append("\(error)")
            registration = .refused("configuration failed: \(error)")
        }
    }
}
