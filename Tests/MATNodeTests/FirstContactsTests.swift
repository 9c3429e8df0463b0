import MATPacket
import Testing
@testable import MATNode

/// A first contact's hold and its wait for a probe's answer (``FirstContacts``): each
/// transition, the clock passed in.
@Suite struct FirstContactsTests {
    static let peer = IPAddress("198.51.100.20")!
    static let other = IPAddress("2001:db8:100::20")!

    @Test func anAnswerThatWentInWithNothingOnTrialIsAlertedAtOnce() {
        var contacts = FirstContacts()
        let r1 = contacts.start(Self.peer, installed: true, onTrial: false, now: 1_000)
        #expect(r1 == .alert)
        #expect(!contacts.isWaiting(Self.peer))
        let r2 = contacts.expire(now: 1_000_000)
        #expect(r2.isEmpty, "nothing waits, so nothing expires")
    }

    @Test func anAnswerThatDidNotGoInReleasesTheTrafficWithNoAlert() {
        var contacts = FirstContacts()
        let r3 = contacts.start(Self.peer, installed: false, onTrial: true, now: 1_000)
        #expect(r3 == .release)
        #expect(!contacts.isWaiting(Self.peer))
    }

    @Test func anAnswerOnTrialWaitsAndItsAlertGoesAtTheFirstProbeAnswered() {
        var contacts = FirstContacts()
        let r4 = contacts.start(Self.peer, installed: true, onTrial: true, now: 1_000)
        #expect(r4 == .awaitProbe)
        #expect(contacts.isWaiting(Self.peer))
        let first = contacts.probeAnswered(Self.peer)
        #expect(first)
        let second = contacts.probeAnswered(Self.peer)
        #expect(!second, "one alert per first contact: a second MoA's answer sends none")
        let r5 = contacts.expire(now: 1_000 + FirstContacts.wait)
        #expect(r5.isEmpty)
    }

    @Test func aProbeAnswerOfAPeerWithNoWaitingAlertSendsNone() {
        var contacts = FirstContacts()
        let answered = contacts.probeAnswered(Self.peer)
        #expect(!answered, "an idle probe's answer is no first contact")
    }

    @Test func aDroppedFirstContactIsReleasedOnce() {
        var contacts = FirstContacts()
        _ = contacts.start(Self.peer, installed: true, onTrial: true, now: 1_000)
        let dropped = contacts.drop(Self.peer)
        #expect(dropped)
        let again = contacts.drop(Self.peer)
        #expect(!again)
        let r6 = contacts.expire(now: 1_000 + FirstContacts.wait)
        #expect(r6.isEmpty)
    }

    /// The wait ends 6 s after the answer (a probe's last wait ends 5.5 s after its first
    /// send), not a millisecond before, and only for the contacts that began that long ago.
    @Test func theWaitEndsAfterSixSecondsForEachContactOnItsOwn() {
        var contacts = FirstContacts()
        #expect(FirstContacts.wait == 6_000)
        _ = contacts.start(Self.peer, installed: true, onTrial: true, now: 1_000)
        _ = contacts.start(Self.other, installed: true, onTrial: true, now: 3_000)
        let r7 = contacts.expire(now: 6_999)
        #expect(r7.isEmpty)
        let r8 = contacts.expire(now: 7_000)
        #expect(r8 == [Self.peer])
        #expect(!contacts.isWaiting(Self.peer) && contacts.isWaiting(Self.other))
        let r9 = contacts.expire(now: 8_999)
        #expect(r9.isEmpty)
        let r10 = contacts.expire(now: 9_000)
        #expect(r10 == [Self.other])
        let late = contacts.probeAnswered(Self.other)
        #expect(!late, "an answer after the wait sends no alert: its traffic was released")
    }
}
