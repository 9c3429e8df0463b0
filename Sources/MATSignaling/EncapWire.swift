import MATPacket

/// The UDP encapsulation used only where a NAT does not carry translated packets
/// (docs/signaling.md, "UDP encapsulation"). Datagrams go between the two nodes'
/// `encap-port`s; each starts with an 8-byte header:
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 4 | magic `MATu` (`4D 41 54 75`) |
/// | 4 | 1 | version = 1 |
/// | 5 | 1 | kind: 1 packet, 2 keepalive, 3 probe request, 4 probe answer, 5 relay registration, 6 relayed packet, 7 relayed signal, 8 registration answer |
/// | 6 | 2 | zero |
///
/// A packet carries, after the header, the 10-byte `virtio_net_hdr` the sender's TUN
/// device gave it and the HoA-to-HoA IP packet itself, untranslated (the datagram's
/// addresses are the MoAs). A keepalive is the header alone; a probe request and its
/// answer carry a 16-byte nonce. A relayed packet is laid out as a packet (so a node sends
/// it from the same buffer); a relay registration is signed (``RelayRegistration``); a
/// relayed signal carries a signaling message through a relay (``RelayedSignal``); a
/// registration answer carries the relay's half of the key agreement (``RelayAnswer``).
/// Pure and allocation-free: parsing reads raw bytes.
public enum EncapWire {
    public static let magic: (UInt8, UInt8, UInt8, UInt8) = (0x4D, 0x41, 0x54, 0x75)
    public static let version: UInt8 = 1
    public static let headerLength = 8
    public static let nonceLength = 16
    /// The virtio header every carried packet starts with.
    public static let virtioHeaderLength = 10
    /// The shortest carried IP packet (an IPv4 header).
    public static let minimumPacketLength = 20

    public enum Kind: UInt8, Sendable {
        case packet = 1, keepalive = 2, probeRequest = 3, probeAnswer = 4
        /// A node's signed list of its HoAs, to a relay (``RelayRegistration``).
        case registration = 5
        /// A packet for a HoA registered at a relay: to the relay, which sends the same
        /// datagram on to that HoA's node.
        case relayed = 6
        /// A signaling message for a HoA registered at a relay, behind the address the
        /// relay saw it come from (``RelayedSignal``).
        case relayedSignal = 7
        /// A relay's answer to a registration it took (``RelayAnswer``).
        case registrationAnswer = 8
    }

    /// What a datagram is, with the offset of what follows the header.
    public enum Frame: Equatable, Sendable {
        /// The virtio header starts at `headerLength`, the IP packet after it.
        case packet
        case keepalive
        /// The nonce starts at `headerLength`.
        case probeRequest
        case probeAnswer
        /// The sequence number starts at `headerLength`; ``RelayRegistration/init(_:)``
        /// reads it.
        case registration
        /// Laid out as ``packet``.
        case relayed
        /// The origin starts at `headerLength`, the signaling message after it
        /// (``RelayedSignal``).
        case relayedSignal
        /// The start of the node's exchange key at `headerLength`, then the relay's keys
        /// and its signature (``RelayAnswer``).
        case registrationAnswer
    }

    /// Reads a datagram's header; nil for anything that is not exactly one of the forms
    /// (wrong magic or version, unknown kind, non-zero reserved bytes, a length the kind
    /// cannot have).
    public static func parse(_ datagram: UnsafeRawBufferPointer) -> Frame? {
        guard datagram.count >= headerLength,
              datagram[0] == magic.0, datagram[1] == magic.1, datagram[2] == magic.2, datagram[3] == magic.3,
              datagram[4] == version, datagram[6] == 0, datagram[7] == 0,
              let kind = Kind(rawValue: datagram[5]) else { return nil }
        let rest = datagram.count - headerLength
        switch kind {
        case .packet, .relayed:
            guard rest >= virtioHeaderLength + minimumPacketLength else { return nil }
            let ipVersion = datagram[headerLength + virtioHeaderLength] >> 4
            guard ipVersion == 4 || ipVersion == 6 else { return nil }
            return kind == .packet ? .packet : .relayed
        case .registration:
            guard rest >= RelayRegistration.fixedLength else { return nil }
            let count = Int(datagram[headerLength + 8])
            guard (1...RelayRegistration.maximumHoAs).contains(count),
                  rest == RelayRegistration.fixedLength + count * RelayRegistration.addressLength
                          + RelayRegistration.exchangeLength + RelayRegistration.signatureLength else { return nil }
            return .registration
        case .relayedSignal:
            return RelayedSignal.fits(datagram) ? .relayedSignal : nil
        case .registrationAnswer:
            return datagram.count == RelayAnswer.length ? .registrationAnswer : nil
        case .keepalive:
            return rest == 0 ? .keepalive : nil
        case .probeRequest:
            return rest == nonceLength ? .probeRequest : nil
        case .probeAnswer:
            return rest == nonceLength ? .probeAnswer : nil
        }
    }

    /// Writes the header of `kind` at `base` (which must have `headerLength` bytes).
    public static func writeHeader(_ kind: Kind, at base: UnsafeMutableRawPointer) {
        base.storeBytes(of: magic.0, toByteOffset: 0, as: UInt8.self)
        base.storeBytes(of: magic.1, toByteOffset: 1, as: UInt8.self)
        base.storeBytes(of: magic.2, toByteOffset: 2, as: UInt8.self)
        base.storeBytes(of: magic.3, toByteOffset: 3, as: UInt8.self)
        base.storeBytes(of: version, toByteOffset: 4, as: UInt8.self)
        base.storeBytes(of: kind.rawValue, toByteOffset: 5, as: UInt8.self)
        base.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
    }

    /// The inner IP packet's source and destination addresses of a packet or relayed
    /// packet datagram (one ``parse(_:)`` took as either); nil when the packet is shorter
    /// than its version's header.
    public static func innerAddresses(_ datagram: UnsafeRawBufferPointer) -> (source: IPAddress, destination: IPAddress)? {
        let start = headerLength + virtioHeaderLength
        guard datagram.count >= start + minimumPacketLength, let base = datagram.baseAddress else { return nil }
        switch datagram[start] >> 4 {
        case 4:
            return (.v4(IPv4Address(loadingFrom: base, offset: start + 12)),
                    .v4(IPv4Address(loadingFrom: base, offset: start + 16)))
        case 6:
            guard datagram.count >= start + 40 else { return nil }
            return (.v6(IPv6Address(loadingFrom: base, offset: start + 8)),
                    .v6(IPv6Address(loadingFrom: base, offset: start + 24)))
        default:
            return nil
        }
    }

    /// A keepalive, or a probe request or answer with `nonce` (16 bytes).
    public static func control(_ kind: Kind, nonce: [UInt8] = []) -> [UInt8] {
        precondition([.keepalive, .probeRequest, .probeAnswer].contains(kind)
                     && (kind == .keepalive ? nonce.isEmpty : nonce.count == nonceLength))
        var bytes = [UInt8](repeating: 0, count: headerLength)
        bytes.withUnsafeMutableBytes { writeHeader(kind, at: $0.baseAddress!) }
        return bytes + nonce
    }
}
