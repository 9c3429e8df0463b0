import MATWire

/// What a queue discipline reads of an Ethernet frame: whether its DSCP asks for the
/// network-control band, and a hash of its flow (protocol, addresses and ports), read
/// from the IPv4 or IPv6 header. Frames too short for the header they announce, and
/// frames that are not IP, are best effort, hashed by their EtherType.
struct FrameClass: Equatable {
    /// DSCP CS6, CS7 or EF: what routers send in their priority band.
    var isNetworkControl: Bool
    var flow: UInt32

    /// Whether a DSCP value belongs in the network-control band: EF (46), CS6 (48), CS7 (56).
    static func isNetworkControl(codePoint: UInt8) -> Bool {
        codePoint == 46 || codePoint == 48 || codePoint == 56
    }

    static let etherTypeIPv4: UInt16 = 0x0800
    static let etherTypeIPv6: UInt16 = 0x86DD
    static let ethernetHeader = 14

    init(isNetworkControl: Bool, flow: UInt32) {
        self.isNetworkControl = isNetworkControl
        self.flow = flow
    }

    /// Classifies the `length` bytes at `frame` (untrusted: never reads past `length`).
    init(frame: UnsafeRawPointer, length: Int) {
        let bytes = UnsafeRawBufferPointer(start: frame, count: max(0, length))
        var hash = FlowHash()
        guard bytes.count >= Self.ethernetHeader else {
            self.init(isNetworkControl: false, flow: hash.value)
            return
        }
        let etherType = BigEndian.u16(bytes, at: 12)
        hash.add(bytes[12])
        hash.add(bytes[13])
        let ip = Self.ethernetHeader
        var trafficClass: UInt8 = 0
        var transport: Int?
        var ports = false
        switch etherType {
        case Self.etherTypeIPv4 where bytes.count >= ip + 20 && bytes[ip] >> 4 == 4:
            trafficClass = bytes[ip + 1]
            let headerLength = Int(bytes[ip] & 0x0f) * 4
            let protocolNumber = bytes[ip + 9]
            hash.add(protocolNumber)
            for offset in 12..<20 { hash.add(bytes[ip + offset]) }
            // Only an unfragmented datagram has its ports where the header says.
            let fragmented = BigEndian.u16(bytes, at: ip + 6) & 0x3fff != 0
            ports = !fragmented && (protocolNumber == 6 || protocolNumber == 17) && headerLength >= 20
            transport = ip + headerLength
        case Self.etherTypeIPv6 where bytes.count >= ip + 40 && bytes[ip] >> 4 == 6:
            trafficClass = (bytes[ip] & 0x0f) << 4 | bytes[ip + 1] >> 4
            let nextHeader = bytes[ip + 6]
            hash.add(nextHeader)
            for offset in 8..<40 { hash.add(bytes[ip + offset]) }
            ports = nextHeader == 6 || nextHeader == 17
            transport = ip + 40
        default:
            break
        }
        if ports, let transport, bytes.count >= transport + 4 {
            for offset in 0..<4 { hash.add(bytes[transport + offset]) }
        }
        self.init(isNetworkControl: Self.isNetworkControl(codePoint: trafficClass >> 2), flow: hash.value)
    }
}

/// FNV-1a, 32 bits: cheap, and spreads the few bytes of a flow's key well enough to
/// pick one of a thousand queues.
struct FlowHash {
    private(set) var value: UInt32 = 2_166_136_261

    mutating func add(_ byte: UInt8) {
        value = (value ^ UInt32(byte)) &* 16_777_619
    }
}
