import MATIMSClient
import MATPacket

/// When the node writes its mapping to the IMS, per address family: the decisions of the
/// service's registrations with no I/O, the time (monotonic milliseconds) passed in, so
/// each has a unit test.
///
/// Each family's ``RegistrationSchedule`` says when its registration is due (on start, on
/// a MoA change, before the lifetime runs out, after a failure with backoff). On top of
/// it: one exchange per family at a time (a registration and a deregistration of the same
/// family never race, so the last one sent is the one the IMS keeps), none while the node
/// has withdrawn its mapping (`matctl deregister`, until `matctl rebind` or a restart),
/// and none before the family has MoAs to register.
struct Registrations {
    /// Each family's schedule; none without an IMS key.
    private(set) var schedules: [AddressFamily: RegistrationSchedule]
    /// Families whose registration or deregistration is on its way to the IMS.
    private(set) var inFlight: Set<AddressFamily> = []
    /// Whether the node has withdrawn its mapping: it then registers nothing until `resume`.
    private(set) var withdrawn = false

    init(_ schedules: [AddressFamily: RegistrationSchedule] = [:]) {
        self.schedules = schedules
    }

    /// The families registered, in no order.
    var families: Dictionary<AddressFamily, RegistrationSchedule>.Keys { schedules.keys }

    /// Whether every registration is confirmed for its family's current MoAs.
    var isRegistered: Bool {
        schedules.values.allSatisfy { schedule in
            schedule.registeredMoAs.map { Set($0) == Set(schedule.currentMoAs) } ?? false
        }
    }

    /// The registrations to send now, in the order of `homes`: those due, of a family with
    /// a schedule, MoAs and no exchange on its way, unless the node has withdrawn.
    func due(for homes: [IPAddress], at now: UInt64) -> [(home: IPAddress, moas: [IPAddress])] {
        guard !withdrawn else { return [] }
        return homes.compactMap { home in
            guard !inFlight.contains(home.family), let schedule = schedules[home.family],
                  schedule.isDue(at: now / 1_000), !schedule.currentMoAs.isEmpty else { return nil }
            return (home, schedule.currentMoAs)
        }
    }

    /// Whether an exchange of `family` may start now (a deregistration waits for the
    /// registration on its way).
    func isIdle(_ family: AddressFamily) -> Bool { !inFlight.contains(family) }

    /// A registration or deregistration of `family` went to the IMS.
    mutating func sent(_ family: AddressFamily) {
        inFlight.insert(family)
    }

    /// A registration of `family` could not be sent (no sequence number): tried again after
    /// the backoff of a failure.
    mutating func notSent(_ family: AddressFamily, at now: UInt64) {
        schedules[family]?.failed(at: now / 1_000)
    }

    /// The IMS answered the exchange of `family` for `moas` (empty: a deregistration).
    /// Returns the family's schedule after it, nil for a family not registered.
    @discardableResult
    mutating func answered(_ family: AddressFamily, moas: [IPAddress], succeeded: Bool,
                           at now: UInt64) -> RegistrationSchedule? {
        inFlight.remove(family)
        if succeeded {
            schedules[family]?.succeeded(moas: moas, at: now / 1_000)
        } else {
            schedules[family]?.failed(at: now / 1_000)
        }
        return schedules[family]
    }

    /// The MoAs to register for `family` are now `moas`: due at once if they differ from
    /// what is registered.
    mutating func moasChanged(_ family: AddressFamily, to moas: [IPAddress], at now: UInt64) {
        schedules[family]?.moasChanged(to: moas, at: now / 1_000)
    }

    /// Something registered with the mapping changed (the signing key): every family is
    /// due at once.
    mutating func renewAll(at now: UInt64) {
        for family in schedules.keys { schedules[family]?.renew(at: now / 1_000) }
    }

    /// Asks again, at once, for the registrations of the families `unconfirmed` names,
    /// unless one is on its way, due already, or failing (its backoff stands: its next
    /// attempt carries what changed anyway). A registration on its way when the key
    /// changed pushed the next one out by half a lifetime.
    mutating func renew(where unconfirmed: (AddressFamily) -> Bool, at now: UInt64) {
        for family in schedules.keys where unconfirmed(family) && !inFlight.contains(family) {
            guard let schedule = schedules[family], schedule.consecutiveFailures == 0,
                  !schedule.isDue(at: now / 1_000) else { continue }
            schedules[family]?.renew(at: now / 1_000)
        }
    }

    /// `matctl deregister`: nothing is registered from now on, until `resume`.
    mutating func withdraw() {
        withdrawn = true
    }

    /// `matctl rebind` after a withdrawal: every family registers again at once.
    mutating func resume(at now: UInt64) {
        guard withdrawn else { return }
        withdrawn = false
        renewAll(at: now)
    }

    /// A reloaded `[ims]` section: new schedules (due at once) for the MoAs of each family
    /// `moas` gives; exchanges on their way and a withdrawal stand.
    mutating func replaceSchedules(_ fresh: [AddressFamily: RegistrationSchedule],
                                   moas: (AddressFamily) -> [IPAddress], at now: UInt64) {
        schedules = fresh
        for family in schedules.keys { moasChanged(family, to: moas(family), at: now) }
    }
}
