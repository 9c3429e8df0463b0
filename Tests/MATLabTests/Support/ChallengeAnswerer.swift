#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATPacket
import MATSignaling
import MATSystem
import MATTestSupport

/// A node's signing key answering challenges from an address of the test's choosing: a
/// signer that moved there, where no matd runs. A thread of the test enters `node`'s
/// namespace, binds the signaling port on `address` (so every answer comes from that
/// address) and, until `stop()`, answers every challenge sent there that verifies with
/// `challengerKey`: the nonce and sequence echoed, signed with `key` as `home`. It answers
/// probes (sequence 0) the same way, as matd does.
final class ChallengeAnswerer: @unchecked Sendable {
    let address: IPAddress
    private let lock = NSLock()
    private var stopped = false
    private var finished = false
    private var answered: [(at: Double, sequence: UInt64)] = []
    private var other = 0
    private var failure: String?

    /// Starts answering; throws when the socket cannot be bound there.
    init(_ lab: Lab, node: String, address: String, home: String, key: SigningKey, challengerKey: VerifyingKey) throws {
        guard let bound = IPAddress(address), let home = IPAddress(home) else { throw LabError("not an address: \(address) \(home)") }
        self.address = bound
        let ready = DispatchSemaphore(value: 0)
        let path = "/run/netns/\(lab.namespace(node))"
        let thread = Thread { [self] in
            run(namespace: path, home: home, key: key, challengerKey: challengerKey, ready: ready)
        }
        thread.start()
        ready.wait()
        if let failure = lock.withLock({ failure }) { throw LabError(failure) }
    }

    deinit { stop() }

    /// When each answered challenge came (Unix time) and the update sequence it named.
    var answers: [(at: Double, sequence: UInt64)] { lock.withLock { answered } }
    /// Datagrams that were no challenge that verifies (acks, anything else).
    var others: Int { lock.withLock { other } }

    /// Stops answering and closes the socket (within 0.1 s).
    func stop() {
        lock.withLock { stopped = true }
        _ = poll(seconds: 5, every: 0.01) { lock.withLock { finished } }
    }

    private func run(namespace: String, home: IPAddress, key: SigningKey, challengerKey: VerifyingKey, ready: DispatchSemaphore) {
        defer { lock.withLock { finished = true } }
        let fd: Int32
        do {
            try NetworkNamespace.enter(path: namespace)
            fd = try Self.bind(address, port: SignalCodec.defaultPort)
        } catch {
            lock.withLock { failure = "challenge answerer at \(address): \(error)" }
            ready.signal()
            return
        }
        defer { close(fd) }
        ready.signal()
        var buffer = [UInt8](repeating: 0, count: 2048)
        while !lock.withLock({ stopped }) {
            let (count, source) = buffer.withUnsafeMutableBytes { raw in
                SocketAddress.receiving { recvfrom(fd, raw.baseAddress, raw.count, 0, $0, $1) }
            }
            guard count > 0, let source else { continue }  // the 0.1 s receive timeout
            guard let signal = try? SignalCodec.open(Array(buffer[0..<count])),
                  let message = try? signal.verify(with: challengerKey),
                  case .challenge(let nonce, let sequence) = message.body else {
                lock.withLock { other += 1 }
                continue
            }
            let response = SignalCodec.seal(SignalMessage(sequence: UInt64(Date().timeIntervalSince1970 * 1_000_000),
                                                          sender: home, receiver: message.sender,
                                                          body: .challengeResponse(nonce: nonce, sequence: sequence)),
                                            with: key)
            _ = response.withUnsafeBytes { raw in
                SocketAddress.with(source) { sendto(fd, raw.baseAddress, raw.count, 0, $0, $1) }
            }
            lock.withLock { answered.append((Date().timeIntervalSince1970, sequence)) }
        }
    }

    /// A UDP socket bound to `address`:`port`, with a 0.1 s receive timeout.
    private static func bind(_ address: IPAddress, port: UInt16) throws -> Int32 {
        let fd = socket(address.family == .ipv4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw LabError("socket: errno \(errno)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let result = SocketAddress.with(IPEndpoint(address: address, port: port)) { Glibc.bind(fd, $0, $1) }
        guard result == 0 else {
            let error = errno
            close(fd)
            throw LabError("bind \(address) port \(port): errno \(error)")
        }
        return fd
    }
}
