import MATDNS
import Synchronization
@testable import MATIMSClient

/// An in-memory transport in front of a `MiniZone`, which tests can take down.
final class FakeExchanger: DNSExchanging {
    let server = DNSServerAddress(address: ip("192.0.2.53"), port: 53)
    private let zone: Mutex<MiniZone>
    private let isDown = Mutex(false)
    private let sent = Mutex<[DNSMessage]>([])
    private let clock: TestClock

    init(zone: MiniZone = MiniZone(), clock: TestClock) {
        self.zone = Mutex(zone)
        self.clock = clock
    }

    /// While down, every exchange fails as if all servers timed out.
    var down: Bool {
        get { isDown.withLock { $0 } }
        set { isDown.withLock { $0 = newValue } }
    }

    /// Changes the zone behind the transport.
    func withZone<R>(_ body: (inout MiniZone) -> R) -> R { zone.withLock { body(&$0) } }

    /// Every request received, parsed.
    var requests: [DNSMessage] { sent.withLock { $0 } }

    var statistics: DNSTransportStatistics { DNSTransportStatistics() }

    func exchange(_ request: [UInt8], servers: [DNSServerAddress],
                  retryOn: Set<DNSResponseCode>) throws(DNSTransportError) -> DNSExchange {
        guard let parsed = try? DNSMessage(bytes: request) else { throw .badRequest }
        sent.withLock { $0.append(parsed) }
        if down { throw .allServersFailed(servers.map { DNSServerFailure(server: $0, error: .timeout) }) }
        let now = clock.now
        guard let bytes = zone.withLock({ $0.handle(request, now: now) }),
              let message = try? DNSMessage(bytes: bytes) else {
            throw .allServersFailed([DNSServerFailure(server: server, error: .timeout)])
        }
        return DNSExchange(bytes: bytes, message: message, server: server, overTCP: false)
    }
}
