import MATIMSClient
import MATLog
import MATPacket

/// Registration with the IMS: the service sends what ``Registrations`` says is due to the
/// IMS worker and hands it the answers.
extension MappingService {
    /// Sends the registrations that are due to the IMS worker; `registered` takes the outcome.
    func register(now: UInt64) {
        guard let client else { return }
        for (home, moas) in registrations.due(for: config.homeAddresses, at: now) {
            let sequence: UInt64
            do {
                sequence = try signaling.nextSequence()
            } catch {
                registrations.notSent(home.family, at: now)
                log(.error, "matd: registering \(home) failed: no sequence number: \(error)")
                continue
            }
            registrations.sent(home.family)
            imsWorker.submit(.register(client, hoa: home, moas: moas, sequence: sequence, publicKey: publicKey))
        }
    }

    /// The IMS's answer to a registration.
    func registered(hoa home: IPAddress, moas: [IPAddress], sequence: UInt64,
                    _ result: Result<RegistrationResult, IMSClientError>, now: UInt64) {
        let succeeded = if case .success = result { true } else { false }
        guard let schedule = registrations.answered(home.family, moas: moas, succeeded: succeeded, at: now) else { return }
        switch result {
        case .success(let registration):
            confirmedKeys[home.family] = registration.publicKey
            log("matd: registered \(home) -> \(moas.map(\.description).joined(separator: ", ")) seq \(sequence) at \(registration.server)")
            EventLog.shared.post("registered", ["home": "\(home)", "mobile": moas.map(\.description).joined(separator: " "),
                                                "sequence": "\(sequence)", "server": "\(registration.server)"])
        case .failure(let error):
            let seconds = now / 1_000
            log(.warning, "matd: registering \(home) failed: \(error); retry in \(schedule.nextAttempt - min(seconds, schedule.nextAttempt)) s")
            EventLog.shared.post("registration_failed", ["home": "\(home)", "error": "\(error)"])
        }
    }
}
