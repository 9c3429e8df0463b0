import MATPacket
@testable import MATNode
import Testing

/// `LearnedPeers` counts the MoAs its mappings name, so the diversion learns which MoA
/// appeared or vanished from the change itself.
@Suite struct LearnedPeersTests {
    private func mapping(_ hoa: String, _ moas: String...) -> LearnedPeers.Entry {
        (PeerMapping(hoa: IPAddress(hoa)!, moas: moas.map { MoABinding(address: IPAddress($0)!) }), 0)
    }

    private func addresses(_ texts: String...) -> Set<IPAddress> { Set(texts.map { IPAddress($0)! }) }

    @Test func aNewPeersMoAAppearsAndADroppedPeersVanishes() {
        var learned = LearnedPeers()
        learned[IPAddress("198.51.100.20")!] = mapping("198.51.100.20", "192.0.2.20")
        learned[IPAddress("2001:db8:100::20")!] = mapping("2001:db8:100::20", "2001:db8:c::20")
        let first = learned.takeMoAChanges()
        #expect(first.appeared == addresses("192.0.2.20", "2001:db8:c::20") && first.vanished.isEmpty)
        learned.removeValue(forKey: IPAddress("198.51.100.20")!)
        let second = learned.takeMoAChanges()
        #expect(second.appeared.isEmpty && second.vanished == addresses("192.0.2.20"))
        #expect(Set(learned.moas) == addresses("2001:db8:c::20") && learned.count == 1)
    }

    @Test func aMoAStaysWhileAnyPeerNamesIt() {
        var learned = LearnedPeers()
        learned[IPAddress("198.51.100.20")!] = mapping("198.51.100.20", "192.0.2.99")
        learned[IPAddress("198.51.100.30")!] = mapping("198.51.100.30", "192.0.2.99")
        _ = learned.takeMoAChanges()
        learned[IPAddress("198.51.100.20")!] = nil
        let kept = learned.takeMoAChanges()
        #expect(kept.appeared.isEmpty && kept.vanished.isEmpty)
        learned[IPAddress("198.51.100.30")!] = nil
        let gone = learned.takeMoAChanges()
        #expect(gone.vanished == addresses("192.0.2.99") && learned.moas.isEmpty)
    }

    @Test func aMoveReplacesTheOldMoAByTheNew() {
        var learned = LearnedPeers()
        let hoa = IPAddress("198.51.100.20")!
        learned[hoa] = mapping("198.51.100.20", "192.0.2.20")
        _ = learned.takeMoAChanges()
        learned[hoa] = mapping("198.51.100.20", "203.0.113.20")
        let moved = learned.takeMoAChanges()
        #expect(moved.appeared == addresses("203.0.113.20") && moved.vanished == addresses("192.0.2.20"))
        // A refresh that changes only the expiry changes no MoA.
        learned[hoa]?.expiresAt = 5_000
        let refreshed = learned.takeMoAChanges()
        #expect(refreshed.appeared.isEmpty && refreshed.vanished.isEmpty && learned[hoa]?.expiresAt == 5_000)
    }

    @Test func aMoAThatWentAndCameBackBetweenTwoReadingsIsNoChange() {
        var learned = LearnedPeers()
        let hoa = IPAddress("198.51.100.20")!
        learned[hoa] = mapping("198.51.100.20", "192.0.2.20")
        _ = learned.takeMoAChanges()
        learned[hoa] = nil
        learned[hoa] = mapping("198.51.100.20", "192.0.2.20")
        let back = learned.takeMoAChanges()
        #expect(back.appeared.isEmpty && back.vanished.isEmpty)
        learned[IPAddress("198.51.100.30")!] = mapping("198.51.100.30", "192.0.2.30")
        learned[IPAddress("198.51.100.30")!] = nil
        let passing = learned.takeMoAChanges()
        #expect(passing.appeared.isEmpty && passing.vanished.isEmpty)
    }
}
