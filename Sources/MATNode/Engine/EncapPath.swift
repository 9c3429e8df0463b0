#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATPacket
import MATSignaling
import Synchronization

/// Counters of the UDP encapsulation (`matctl stats`, `encapsulation`).
public struct EncapCounters: Sendable, Equatable {
    public var packetsSent: UInt64 = 0
    public var packetsReceived: UInt64 = 0
    public var keepalivesReceived: UInt64 = 0
    public var probesAnswered: UInt64 = 0
    public var probeAnswersReceived: UInt64 = 0
    /// Datagrams refused: not a known form, from no peer's MoA, or a packet whose inner
    /// source's mapping is not the datagram's source (anything spoofed).
    public var refused: UInt64 = 0
    /// Packets that could not be sent (no socket of the family, the kernel refused).
    public var sendFailures: UInt64 = 0
    /// TCP packets cut into path-MTU-sized segments before they went in UDP (each segment
    /// is one datagram in `packetsSent`).
    public var packetsSegmented: UInt64 = 0
    /// Received TCP segments (each one datagram in `packetsReceived`) that went into the
    /// TUN device joined with others of their flow into super-packets (``TCPCoalescer``).
    public var segmentsCoalesced: UInt64 = 0
    /// Packets too large for the path in UDP that must not be fragmented (IPv4 with DF,
    /// IPv6), answered with ICMP "fragmentation needed" or Packet Too Big, and those
    /// dropped unanswered because the answers' budget was spent (``TooBigAnswers``).
    public var tooBigAnswered: UInt64 = 0
    public var tooBigLimited: UInt64 = 0
    /// A node with `[relay] address` (docs/signaling.md, "Relay"): packets it sent
    /// through the relay (each datagram, segments included; also in `packetsSent`), relayed
    /// packets it took from the relay (also in `packetsReceived`), relayed packets it
    /// refused (not from its relay, not from a peer reached in UDP, not for its HoA),
    /// and its registrations sent and failed; signaling messages sent and taken through
    /// the relay (``RelayedSignal``; the refused ones count in `relayRefused`); answers
    /// from the relay's address and port it did not take (``RelaySecrets/take(_:now:)``:
    /// for no exchange key of its own, or not signed with the pinned `[relay] public-key`; also
    /// in `refused`), and registrations a relayed signal that failed its MAC asked for
    /// (``RelaySecrets/refused(now:)``).
    public var relayPacketsSent: UInt64 = 0
    public var relayPacketsReceived: UInt64 = 0
    public var relayRefused: UInt64 = 0
    public var relayRegistrationsSent: UInt64 = 0
    public var relayRegistrationFailures: UInt64 = 0
    public var relaySignalsSent: UInt64 = 0
    public var relaySignalsReceived: UInt64 = 0
    public var relayAnswersRefused: UInt64 = 0
    public var relayRecoveries: UInt64 = 0

    public init() {}

    public var named: [(String, UInt64)] {
        [("encap_packets_sent", packetsSent), ("encap_packets_received", packetsReceived),
         ("encap_keepalives_received", keepalivesReceived), ("encap_probes_answered", probesAnswered),
         ("encap_probe_answers_received", probeAnswersReceived), ("encap_refused", refused),
         ("encap_send_failures", sendFailures), ("encap_packets_segmented", packetsSegmented),
         ("encap_segments_coalesced", segmentsCoalesced), ("encap_too_big_answered", tooBigAnswered),
         ("encap_too_big_rate_limited", tooBigLimited)]
            + (relayClient ? [("encap_relay_packets_sent", relayPacketsSent),
                              ("encap_relay_packets_received", relayPacketsReceived),
                              ("encap_relay_refused", relayRefused),
                              ("encap_relay_registrations_sent", relayRegistrationsSent),
                              ("encap_relay_registration_failures", relayRegistrationFailures),
                              ("encap_relay_signals_sent", relaySignalsSent),
                              ("encap_relay_signals_received", relaySignalsReceived),
                              ("encap_relay_answers_refused", relayAnswersRefused),
                              ("encap_relay_recoveries", relayRecoveries)] : [])
    }

    /// Whether the node registers with a relay: the relay counters are shown only then.
    public var relayClient = false
}

/// The engine's side of the UDP encapsulation (docs/datapath.md, "Behind NAT"): the
/// sockets on `encap-port`, where each peer's traffic goes in UDP (``EncapEndpoints``),
/// and the per-packet work: sending an application's HoA packet, untranslated, in one
/// datagram, or a TCP packet too large for the path (a GSO super-packet) cut into
/// path-MTU-sized segments in one system call (EncapSegments.swift), and writing a
/// received one into the TUN device as the translated inbound packet would have been.
/// Raw buffers only, no allocation per packet. Owned by the engine thread; the sockets may
/// also send control datagrams from the service thread.
public final class EncapPath: @unchecked Sendable {
    public let port: UInt16
    let socket4: DatagramSocket?
    let socket6: DatagramSocket?
    /// Probe answers go from these (ephemeral ports), not from `port`: a node in UDP sends
    /// its keepalives to `port`, and an answer from there would pass its NAT as a reply.
    let answerSockets: [AddressFamily: DatagramSocket]
    var endpoints: EncapEndpoints
    var counters = EncapCounters()
    /// The relay's registrations and forwarding (`[relay] serve = on`); nil on other nodes.
    var relay: RelayForwarder?
    /// The relay this node registers with (`[relay] address`, at its `encap-port`); nil
    /// for none. Relayed packets are taken only from there.
    var relayServer: RelayTable.Binding?
    /// When a peer's traffic in UDP goes through `relayServer` (``RelayFallback``), and
    /// the MoAs whose traffic does now.
    var fallback = RelayFallback()
    var relayedMoAs: Set<IPAddress> { fallback.relayedMoAs }
    /// The per-peer lines of the relay fallback (a peer to the relay or back from it):
    /// 100,000 peers in UDP that go silent together are one summary, not 100,000 lines.
    var fallbackLog = PerPeerLogLimit()
    /// The exchange keys of this node's registrations with `relayServer` and the secrets
    /// agreed on with it, with which a relayed signal's stamp is checked (``RelaySecrets``):
    /// the service thread registers, the engine thread takes answers and checks.
    let relaySecrets: Mutex<RelaySecrets>
    /// Takes a signaling message that came through `relayServer` (``RelayedSignal``): the
    /// origin the relay stamped and the message, valid only during the call (the handler
    /// copies what it keeps). Set before the engine starts.
    var relayedSignalHandler: @Sendable (IPAddress, UnsafeRawBufferPointer) -> Void = { _, _ in }
    /// Takes a HoA a relay has no key for (or whose key from the IMS failed), for the
    /// service to look up (``RelayKeyLookups``). Set before the engine starts.
    var relayKeyHandler: @Sendable (IPAddress) -> Void = { _ in }
    /// Wakes the service for the registration a relayed signal that failed its MAC asked
    /// for (``RelaySecrets/refused(now:)``). Set before the engine starts.
    var relayRecoveryHandler: @Sendable () -> Void = {}
    /// Registrations sent and failed on the service thread (``countRegistration(sent:)``).
    private let registrations = Atomic<UInt64>(0), registrationFailures = Atomic<UInt64>(0)
    /// Signaling messages the service thread sent through the relay (``countRelayedSignal()``).
    private let relayedSignalsSent = Atomic<UInt64>(0)
    /// Receive buffer: the encapsulation header, the virtio header, a 64 KiB packet.
    let receiveBuffer: UnsafeMutableRawPointer
    static let receiveSize = EncapWire.headerLength + VirtioNetHeader.size + 65_536
    /// Probe requests answered, at most 20 a second (no reflector for spoofed sources
    /// beyond the peers' own MoAs, and not a fast one even for those).
    private var probeBudget = (tokens: 20, refilledAt: UInt64(0))
    /// Cuts TCP packets too large for the path, and the vectors that send the segments
    /// (preallocated: ``SegmentVectors``).
    var segmenter = TCPSegmenter()
    /// Cuts UDP GSO super-packets into the datagrams their senders asked for.
    var udpSegmenter = UDPSegmenter()
    let vectors = SegmentVectors()
    /// Puts received segments of one flow back together for the TUN device.
    var coalescer = TCPCoalescer()
    /// Answers packets too large for the path that must not be fragmented.
    let tooBig = TooBigAnswers()
    /// How segments go: in one `sendmsg` as one buffer the kernel cuts (`UDP_SEGMENT`,
    /// Linux 4.18), else in one `sendmmsg`.
    let segmentation: Segmentation
    /// The MTU towards each MoA traffic goes to in UDP (``RouteMTU``), refreshed about
    /// once a second (``PathMTURefresh``) and after a send the kernel found too large.
    var pathMTUs: [IPAddress: Int] = [:]
    var mtuRefresh = PathMTURefresh()

    /// The largest super-packet one datagram carries whole (its UDP payload, headers in).
    public static let maximumSuperPacket: UInt32 = 65_000

    /// The encapsulation sockets' kernel buffers: a TCP flow's burst of super-packets, up
    /// to 65 KB each and about twice that in the kernel's accounting once fragmented,
    /// overflows the default 208 KB at once (a full send buffer fails the send, a full
    /// receive buffer drops the datagram: the flow's packets lost either way).
    /// `MATD_ENCAP_SOCKET_BUFFER` (bytes; 0 leaves the kernel's default) overrides it for
    /// measurements.
    static let defaultSocketBuffer: Int32 = 4 << 20
    static let socketBufferVariable = "MATD_ENCAP_SOCKET_BUFFER"

    /// The buffer size `MATD_ENCAP_SOCKET_BUFFER` asks for (a decimal number of bytes, 0
    /// for the kernel's default); anything else keeps `defaultSocketBuffer`.
    static func socketBuffer(fromEnvironment value: String?) -> Int32 {
        guard let value, let bytes = Int32(value), bytes >= 0 else { return defaultSocketBuffer }
        return bytes
    }

    /// Binds `port` for each family in `families`, and for each in `optionalFamilies`
    /// the host has (``EncapFamilies``); a peer's UDP path is forgotten `lifetime` ms
    /// after its last keepalive.
    public init(port: UInt16, families: Set<AddressFamily>, optionalFamilies: Set<AddressFamily> = [],
                lifetime: UInt64 = 60_000) throws(SystemError) {
        self.port = port
        socket4 = try Self.bind(.ipv4, port: port, required: families, optional: optionalFamilies)
        socket6 = try Self.bind(.ipv6, port: port, required: families, optional: optionalFamilies)
        let buffer = Self.socketBuffer(fromEnvironment: getenv(Self.socketBufferVariable).map { String(cString: $0) })
        if buffer > 0 {
            try socket4?.setBuffers(bytes: buffer)
            try socket6?.setBuffers(bytes: buffer)
        }
        var answers: [AddressFamily: DatagramSocket] = [:]
        for family in [socket4, socket6].compactMap({ $0?.family }) {
            answers[family] = try DatagramSocket(family: family, port: 0)
        }
        answerSockets = answers
        endpoints = EncapEndpoints(lifetime: lifetime)
        // The relay forgets a binding `lifetime` after its last registration (the nodes
        // agree on `encap-keepalive`), and a registration may be a second on its way.
        relaySecrets = Mutex(RelaySecrets(retention: lifetime + 5_000))
        let takesUDPSegment = (socket4 ?? socket6).map(Self.takesUDPSegment) ?? false
        segmentation = Segmentation(fromEnvironment: getenv(Self.segmentationVariable).map { String(cString: $0) },
                                    takesUDPSegment: takesUDPSegment)
        if segmentation != .off {
            for socket in [socket4, socket6].compactMap({ $0 }) {
                try Self.setFragmentation(socket, allowed: false)
                Self.receiveTrains(socket)
            }
        }
        receiveBuffer = UnsafeMutableRawPointer.allocate(byteCount: Self.receiveSize, alignment: 16)
    }

    deinit { receiveBuffer.deallocate() }

    /// `family`'s socket on `port`: nil when neither set names it, or when only
    /// `optional` does and the host lacks the family (logged).
    private static func bind(_ family: AddressFamily, port: UInt16, required: Set<AddressFamily>,
                             optional: Set<AddressFamily>) throws(SystemError) -> DatagramSocket? {
        if required.contains(family) { return try DatagramSocket(family: family, port: port, role: "encap-port") }
        guard optional.contains(family) else { return nil }
        do {
            return try DatagramSocket(family: family, port: port, role: "encap-port")
        } catch {
            guard EncapFamilies.hostLacksFamily(error) else { throw error }
            log(.warning, "matd: \(error); the relay does not listen on \(family)")
            return nil
        }
    }

    /// The families `encap-port` is bound in.
    public var families: [AddressFamily] { [socket4, socket6].compactMap { $0?.family } }

    /// How a TCP packet too large for the path goes in UDP.
    enum Segmentation: Equatable {
        case udpSegment, multipleMessages
        /// Whole, one datagram the kernel fragments (as before segmentation; only for
        /// measurements).
        case off

        /// `MATD_ENCAP_SEGMENTATION`: `sendmmsg` even where the kernel has `UDP_SEGMENT`
        /// (to measure and test that path on such a kernel), `off`, or unset: the best
        /// the kernel has.
        init(fromEnvironment value: String?, takesUDPSegment: Bool) {
            switch value {
            case "sendmmsg": self = .multipleMessages
            case "off": self = .off
            default: self = takesUDPSegment ? .udpSegment : .multipleMessages
            }
        }
    }
    static let segmentationVariable = "MATD_ENCAP_SEGMENTATION"

    /// The encapsulation `config` asks for (nil when `udp-encapsulation = off`), with the
    /// TUN device's super-packets capped so that one always fits in one datagram (the
    /// cap costs the direct path nothing measurable: 65,000 instead of 65,536 bytes).
    static func open(_ config: NodeConfig, tun: String) throws(SystemError) -> EncapPath? {
        guard config.udpEncapsulation != .off else { return nil }
        // Four keepalive intervals of the peer's (the nodes agree on `encap-keepalive`).
        let families = EncapFamilies(homeAddresses: config.homeAddresses, servesRelay: config.relay?.serves == true)
        let path = try EncapPath(port: config.encapPort, families: families.required, optionalFamilies: families.optional,
                                 lifetime: config.encapKeepalive * 4_000)
        if let relay = config.relay, relay.serves {
            log("matd: relaying on encap-port \(config.encapPort) over "
                + path.families.map(\.description).joined(separator: " and "))
            // A registration lives four keepalive intervals, as a UDP path does.
            let key = try RelayKeyFile.load(config)
            log("matd: answers to registrations signed with the relay key \(key.publicKey.base64) "
                + "(\(RelayKeyFile.path(config)); the nodes pin it as [relay] public-key)")
            path.relay = RelayForwarder(table: RelayTable(lifetime: config.encapKeepalive * 4_000),
                                        pinnedKeys: relay.clientKeys, signingKey: key)
        }
        if let address = config.relay?.address {
            path.relayServer = RelayTable.Binding(address: address, port: config.encapPort)
            path.fallback = RelayFallback(keepaliveInterval: config.encapKeepalive * 1_000)
            path.counters.relayClient = true
            if let key = config.relay?.key {
                path.relaySecrets.withLock { $0.relaySigningKey = key }
            } else {
                log(.warning, "matd: no [relay] public-key pinned: answers from the relay \(address) are taken unsigned, so "
                    + "anyone who reads this node's registrations and sends from the relay's address can learn the "
                    + "secret its relayed signals are checked with (docs/config.md, [relay])")
            }
        }
        do {
            try LinkGSO.setMaximumSize(maximumSuperPacket, of: tun)
        } catch {
            // Without the cap a super-packet of more than 65,490 bytes cannot go in UDP;
            // such a packet is counted as a send failure, the rest still flows.
            log(.warning, "matd: \(error); super-packets to peers reached in UDP may be dropped")
        }
        return path
    }

    /// Counts a registration with the relay the service thread sent, or failed to send.
    func countRegistration(sent: Bool) {
        if sent {
            registrations.add(1, ordering: .relaxed)
        } else {
            registrationFailures.add(1, ordering: .relaxed)
        }
    }

    /// Counts a signaling message the service thread sent through the relay.
    func countRelayedSignal() { relayedSignalsSent.add(1, ordering: .relaxed) }

    /// `counters` with the registrations and relayed signals the service thread counted.
    func withRegistrations(_ counters: EncapCounters) -> EncapCounters {
        var counters = counters
        counters.relayRegistrationsSent = registrations.load(ordering: .relaxed)
        counters.relayRegistrationFailures = registrationFailures.load(ordering: .relaxed)
        counters.relaySignalsSent = relayedSignalsSent.load(ordering: .relaxed)
        return counters
    }

    var fileDescriptors: [Int32] { [socket4?.fileDescriptor, socket6?.fileDescriptor].compactMap { $0 } }

    /// Sends a control datagram (keepalive, probe answer) to `moa`:`port`.
    public func sendControl(_ bytes: [UInt8], to moa: IPAddress, port: UInt16) throws(SystemError) {
        guard let socket = moa.family == .ipv4 ? socket4 : socket6 else {
            throw SystemError("encapsulation to \(moa)", detail: "no \(moa.family) socket")
        }
        try socket.send(bytes, to: moa, port: port)
    }

    /// Answers a probe request from `moa` to its `port`, from an ephemeral port: what
    /// the requester's NAT has seen nothing from.
    func sendProbeAnswer(_ bytes: [UInt8], to moa: IPAddress) throws(SystemError) {
        guard let socket = answerSockets[moa.family] else {
            throw SystemError("probe answer to \(moa)", detail: "no \(moa.family) socket")
        }
        try socket.send(bytes, to: moa, port: port)
    }

    /// Sends `length` bytes at `datagram` (the encapsulation header already written) to
    /// `moa`:`port`. Returns false when the kernel refused it.
    @inline(__always)
    func send(_ datagram: UnsafeRawPointer, length: Int, to moa: IPAddress, port: UInt16) -> Bool {
        guard let fd = (moa.family == .ipv4 ? socket4 : socket6)?.fileDescriptor else { return false }
        let sent = SocketAddress.with(IPEndpoint(address: moa, port: port)) {
            sendto(fd, datagram, length, Int32(MSG_DONTWAIT), $0, $1)
        }
        return sent == length
    }

    /// Whether a probe request may be answered now (a token bucket of 20 a second).
    func mayAnswerProbe(now: UInt64) -> Bool {
        if now >= probeBudget.refilledAt + 1_000 { probeBudget = (20, now) }
        guard probeBudget.tokens > 0 else { return false }
        probeBudget.tokens -= 1
        return true
    }
}
