import MATNode
import MATPacket
import Testing

/// SIGHUP takes the peers and the IMS section from the new file and reports the rest.
@Suite struct ReloadTests {
    @Test func peersAndIMSAreTakenOtherChangesAreReported() throws {
        let old = try NodeConfig(parsing: NodeConfigTests.valid)
        let edited = NodeConfigTests.valid
            .replacingOccurrences(of: "mobile-address = 203.0.113.5", with: "mobile-address = 203.0.113.6")
            .replacingOccurrences(of: "zone = mat.example.", with: "zone = other.example.")
            .replacingOccurrences(of: "signaling-port = 7600", with: "signaling-port = 7601")
            .replacingOccurrences(of: "uplink = eth0", with: "uplink = eth1")
        let next = try NodeConfig(parsing: edited)
        let (merged, notApplied) = old.reloaded(from: next)
        #expect(merged.peers == next.peers)
        #expect(merged.ims == next.ims)
        #expect(merged.signalingPort == old.signalingPort)
        #expect(merged.uplinks == old.uplinks)
        #expect(notApplied.sorted() == [
            "signaling-port changed; it takes effect when matd is restarted",
            "uplink changed; it takes effect when matd is restarted",
        ])
    }

    @Test func anUnchangedFileChangesNothing() throws {
        let config = try NodeConfig(parsing: NodeConfigTests.valid)
        let (merged, notApplied) = config.reloaded(from: config)
        #expect(merged == config)
        #expect(notApplied.isEmpty)
    }
}
