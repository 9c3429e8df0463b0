import MATIMSClient
import MATPacket
import Testing
@testable import MATNode

/// When the node writes its mapping to the IMS (``Registrations``), times in milliseconds.
@Suite struct RegistrationsTests {
    static let home4 = IPAddress("198.51.100.10")!, home6 = IPAddress("2001:db8:100::10")!
    static let moaA = IPAddress("192.0.2.10")!, moaB = IPAddress("203.0.113.10")!
    static let moa6 = IPAddress("2001:db8:a::10")!

    /// Both families, lifetime 300 s (re-registered after 150 s), each with its MoA.
    func started(at now: UInt64 = 0) -> Registrations {
        var registrations = Registrations([.ipv4: RegistrationSchedule(lifetime: 300), .ipv6: RegistrationSchedule(lifetime: 300)])
        registrations.moasChanged(.ipv4, to: [Self.moaA], at: now)
        registrations.moasChanged(.ipv6, to: [Self.moa6], at: now)
        return registrations
    }

    func dueHomes(_ registrations: Registrations, at now: UInt64) -> [IPAddress] {
        registrations.due(for: [Self.home4, Self.home6], at: now).map(\.home)
    }

    @Test func everyFamilyRegistersOnStartOnceItHasMoAs() {
        var registrations = Registrations([.ipv4: RegistrationSchedule(lifetime: 300)])
        #expect(dueHomes(registrations, at: 0).isEmpty, "no MoA yet: nothing to register")
        registrations.moasChanged(.ipv4, to: [Self.moaA], at: 10)
        let due = registrations.due(for: [Self.home4, Self.home6], at: 10)
        #expect(due.map(\.home) == [Self.home4], "no schedule for IPv6: no IMS key for it")
        #expect(due.first?.moas == [Self.moaA])
        #expect(!registrations.isRegistered)
    }

    @Test func oneExchangePerFamilyAtATime() {
        var registrations = started()
        registrations.sent(.ipv4)
        #expect(dueHomes(registrations, at: 0) == [Self.home6])
        #expect(!registrations.isIdle(.ipv4) && registrations.isIdle(.ipv6))
        // A move while the registration is on its way: due, but sent after the answer.
        registrations.moasChanged(.ipv4, to: [Self.moaB], at: 500)
        #expect(dueHomes(registrations, at: 500) == [Self.home6])
        registrations.answered(.ipv4, moas: [Self.moaA], succeeded: true, at: 600)
        #expect(dueHomes(registrations, at: 600) == [Self.home4, Self.home6], "the answer was for the old MoA")
    }

    @Test func aConfirmedRegistrationIsRenewedAtHalfItsLifetime() {
        var registrations = started()
        for family in [AddressFamily.ipv4, .ipv6] {
            registrations.sent(family)
            registrations.answered(family, moas: family == .ipv4 ? [Self.moaA] : [Self.moa6], succeeded: true, at: 1_000)
        }
        #expect(registrations.isRegistered)
        #expect(dueHomes(registrations, at: 150_999).isEmpty)
        #expect(dueHomes(registrations, at: 151_000) == [Self.home4, Self.home6])
    }

    @Test func aMoveRegistersAtOnceEvenDuringABackoff() {
        var registrations = started()
        registrations.sent(.ipv4)
        let schedule = registrations.answered(.ipv4, moas: [Self.moaA], succeeded: false, at: 0)
        #expect(schedule?.nextAttempt == 1)
        registrations.sent(.ipv4)
        registrations.answered(.ipv4, moas: [Self.moaA], succeeded: false, at: 1_000)
        #expect(!dueHomes(registrations, at: 2_999).contains(Self.home4), "the backoff doubled: 2 s")
        #expect(dueHomes(registrations, at: 3_000).contains(Self.home4))
        registrations.moasChanged(.ipv4, to: [Self.moaB], at: 1_500)
        #expect(dueHomes(registrations, at: 1_500).contains(Self.home4))
    }

    @Test func noSequenceNumberWaitsAsAFailureDoes() {
        var registrations = started()
        registrations.notSent(.ipv4, at: 5_000)
        #expect(registrations.isIdle(.ipv4))
        #expect(!dueHomes(registrations, at: 5_999).contains(Self.home4))
        #expect(dueHomes(registrations, at: 6_000).contains(Self.home4))
    }

    /// `matctl deregister` stops every registration until `matctl rebind`, which registers
    /// at once; the deregistration itself waits for a registration on its way.
    @Test func aWithdrawnMappingIsRegisteredAgainOnlyAfterResume() {
        var registrations = started()
        registrations.sent(.ipv4)
        registrations.withdraw()
        #expect(dueHomes(registrations, at: 0).isEmpty)
        #expect(!registrations.isIdle(.ipv4), "the deregistration waits for the registration's answer")
        registrations.answered(.ipv4, moas: [Self.moaA], succeeded: true, at: 100)
        registrations.sent(.ipv4)
        registrations.answered(.ipv4, moas: [], succeeded: true, at: 200)
        #expect(registrations.schedules[.ipv4]?.registeredMoAs == [])
        #expect(dueHomes(registrations, at: 1_000_000).isEmpty, "withdrawn: not even at the lifetime's end")
        registrations.resume(at: 1_000_000)
        #expect(dueHomes(registrations, at: 1_000_000) == [Self.home4, Self.home6])
    }

    @Test func aResumeWithoutAWithdrawalChangesNothing() {
        var registrations = started()
        registrations.sent(.ipv4)
        registrations.answered(.ipv4, moas: [Self.moaA], succeeded: true, at: 0)
        registrations.resume(at: 10_000)
        #expect(!dueHomes(registrations, at: 10_000).contains(Self.home4))
    }

    /// A new signing key: every family registers at once; those whose answer came back
    /// without the new key ask again, unless failing (their backoff stands) or on their way.
    @Test func aNewKeyIsRegisteredAndAskedForAgainWhereUnconfirmed() {
        var registrations = started()
        for family in [AddressFamily.ipv4, .ipv6] {
            registrations.sent(family)
            registrations.answered(family, moas: family == .ipv4 ? [Self.moaA] : [Self.moa6], succeeded: true, at: 0)
        }
        registrations.renewAll(at: 1_000)
        #expect(dueHomes(registrations, at: 1_000) == [Self.home4, Self.home6])
        // IPv4's went with the old key (it was on its way), IPv6's is on its way now.
        registrations.sent(.ipv4)
        registrations.answered(.ipv4, moas: [Self.moaA], succeeded: true, at: 1_100)
        registrations.sent(.ipv6)
        registrations.renew(where: { _ in true }, at: 1_200)
        #expect(dueHomes(registrations, at: 1_200) == [Self.home4])
        // A failing family keeps its backoff.
        registrations.answered(.ipv6, moas: [Self.moa6], succeeded: false, at: 1_300)
        registrations.renew(where: { $0 == .ipv6 }, at: 1_300)
        #expect(!dueHomes(registrations, at: 1_300).contains(Self.home6))
    }

    @Test func aReloadedSectionRegistersAtOnceAndKeepsWhatIsOnItsWay() {
        var registrations = started()
        registrations.sent(.ipv4)
        registrations.withdraw()
        registrations.replaceSchedules([.ipv4: RegistrationSchedule(lifetime: 60)], moas: { _ in [Self.moaB] }, at: 0)
        #expect(registrations.schedules[.ipv6] == nil)
        #expect(registrations.schedules[.ipv4]?.currentMoAs == [Self.moaB])
        #expect(!registrations.isIdle(.ipv4))
        #expect(dueHomes(registrations, at: 0).isEmpty, "still withdrawn")
        registrations.resume(at: 0)
        registrations.answered(.ipv4, moas: [Self.moaA], succeeded: true, at: 0)
        #expect(dueHomes(registrations, at: 0) == [Self.home4])
    }
}
