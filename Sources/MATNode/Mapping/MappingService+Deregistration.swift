import Foundation
import MATPacket
import Synchronization

/// `matctl deregister`: the node withdraws its mapping from the IMS (its MoAs and their
/// PTRs; the TXT, with its sequence number and key, stays) and registers nothing more
/// until `matctl rebind` or a restart. For a node going away for good, before it stops:
/// peers then drop its mapping at their next lookup, instead of at the end of its
/// registration lifetime. A stop (SIGTERM) does not do this by itself, because
/// `systemctl restart` sends the same signal.
extension MappingService {
    /// Deregisters every HoA and returns once the IMS has confirmed it (at once without
    /// an IMS key, or after `timeout` seconds with an error).
    public func deregister(timeout: Double = 30) -> DeregistrationReport {
        let ticket = DeregistrationTicket()
        deregistrationRequests.withLock { $0.append(ticket) }
        wakeup.signal()
        guard ticket.done.wait(timeout: .now() + timeout) == .success, let report = ticket.report.withLock({ $0 }) else {
            return DeregistrationReport(error: "no answer within \(Int(timeout)) s")
        }
        return report
    }

    /// On the service thread: takes the deregistrations asked for, sends each HoA's once
    /// no registration of its family is on its way (which would put the MoAs back), and
    /// reports those the IMS has answered.
    func deregistrations(now: UInt64) {
        for ticket in deregistrationRequests.withLock({ queue -> [DeregistrationTicket] in
            defer { queue.removeAll() }
            return queue
        }) {
            guard client != nil, !registrations.families.isEmpty else {
                ticket.finish(DeregistrationReport(homeAddresses: [], milliseconds: 0))
                continue
            }
            registrations.withdraw()
            let homes = config.homeAddresses.filter { registrations.schedules[$0.family] != nil }
            log(.notice, "matd: deregistering \(homes.map(\.description).joined(separator: ", ")); "
                + "no more registrations until matctl rebind or a restart")
            EventLog.shared.post("deregistering", ["home": homes.map(\.description).joined(separator: " ")])
            pendingDeregistrations.append(PendingDeregistration(ticket: ticket, unsent: homes, startedAt: now))
        }
        guard let client else { return }
        for index in pendingDeregistrations.indices {
            for home in pendingDeregistrations[index].unsent where registrations.isIdle(home.family) {
                pendingDeregistrations[index].unsent.removeAll { $0 == home }
                do {
                    let sequence = try signaling.nextSequence()
                    registrations.sent(home.family)
                    imsWorker.submit(.register(client, hoa: home, moas: [], sequence: sequence, publicKey: publicKey))
                    pendingDeregistrations[index].sent.append(home)
                } catch {
                    log(.error, "matd: deregistering \(home) failed: no sequence number: \(error)")
                    pendingDeregistrations[index].failed.append(home)
                }
            }
        }
        pendingDeregistrations.removeAll { pending in
            guard pending.unsent.isEmpty, pending.sent.allSatisfy({ registrations.isIdle($0.family) }) else { return false }
            let failed = pending.failed + pending.sent.filter { registrations.schedules[$0.family]?.registeredMoAs?.isEmpty != true }
            pending.ticket.finish(DeregistrationReport(
                error: failed.isEmpty ? nil : "the IMS did not take the deregistration of "
                    + failed.map(\.description).joined(separator: ", ") + " (see the log)",
                homeAddresses: pending.sent.filter { !failed.contains($0) }.map(\.description),
                milliseconds: now - pending.startedAt))
            return true
        }
    }
}

/// A `matctl deregister` on its way: HoAs still to send, sent, and failed.
struct PendingDeregistration {
    var ticket: DeregistrationTicket
    var unsent: [IPAddress]
    var sent: [IPAddress] = []
    var failed: [IPAddress] = []
    var startedAt: UInt64
}

/// `matctl deregister`: what was withdrawn.
public struct DeregistrationReport: Codable, Sendable, Equatable {
    /// What failed; nil when every HoA was deregistered.
    public var error: String?
    /// The HoAs whose mappings the IMS no longer holds.
    public var homeAddresses: [String]
    /// From the request to the IMS's last answer, milliseconds.
    public var milliseconds: UInt64

    public init(error: String? = nil, homeAddresses: [String] = [], milliseconds: UInt64 = 0) {
        self.error = error
        self.homeAddresses = homeAddresses
        self.milliseconds = milliseconds
    }
}

/// Where the service thread leaves a deregistration's report for the control thread.
final class DeregistrationTicket: Sendable {
    let done = DispatchSemaphore(value: 0)
    let report = Mutex<DeregistrationReport?>(nil)

    func finish(_ result: DeregistrationReport) {
        report.withLock { $0 = result }
        done.signal()
    }
}
