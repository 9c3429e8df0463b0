import MATPacket
import Testing
@testable import MATNode

/// The flow a held packet is kept under: each TCP connection and UDP socket pair to a
/// peer has its own, so releasing the peer restarts every connection at once.
@Suite struct PacketFlowTests {
    static let peer = IPAddress("198.51.100.20")!
    static let peer6 = IPAddress("2001:db8:1::20")!

    func ipv4(protocol number: UInt8, fragmentOffset: UInt16 = 0, payload: [UInt8]) -> [UInt8] {
        let total = UInt16(20 + payload.count)
        return [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, 1, UInt8(fragmentOffset >> 8), UInt8(fragmentOffset & 0xFF),
                64, number, 0, 0, 198, 51, 100, 10, 198, 51, 100, 20] + payload
    }

    func ipv6(nextHeader: UInt8, payload: [UInt8]) -> [UInt8] {
        let length = UInt16(payload.count)
        return [0x60, 0, 0, 0, UInt8(length >> 8), UInt8(length & 0xFF), nextHeader, 64]
            + [0x20, 0x01, 0x0D, 0xB8, 0, 1] + [UInt8](repeating: 0, count: 9) + [0x10]
            + [0x20, 0x01, 0x0D, 0xB8, 0, 1] + [UInt8](repeating: 0, count: 9) + [0x20] + payload
    }

    func flow(_ packet: [UInt8], peer: IPAddress = Self.peer) -> PacketFlow {
        packet.withUnsafeBytes { PacketFlow(packet: $0.baseAddress!, length: $0.count, peer: peer) }
    }

    /// A TCP header from `source` to `destination` port, no options, no payload.
    func tcp(_ source: UInt16, _ destination: UInt16) -> [UInt8] {
        [UInt8(source >> 8), UInt8(source & 0xFF), UInt8(destination >> 8), UInt8(destination & 0xFF)]
            + [0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xFF, 0xFF, 0, 0, 0, 0]
    }

    @Test func tcpAndUDPFlowsAreToldApartByTheirPorts() {
        let connection = flow(ipv4(protocol: 6, payload: tcp(40000, 5201)))
        #expect(connection.transportProtocol == 6)
        #expect(connection.ports == 40000 << 16 | 5201)
        #expect(flow(ipv4(protocol: 6, payload: tcp(40001, 5201))) != connection)
        #expect(flow(ipv4(protocol: 6, payload: tcp(40000, 5201) + [1, 2, 3])) == connection)
        let datagram = flow(ipv4(protocol: 17, payload: [0x14, 0x52, 0xD4, 0xEF, 0, 8, 0, 0]))
        #expect(datagram.transportProtocol == 17 && datagram.ports == 5202 << 16 | 54511)
        #expect(datagram != connection)
        // Another peer, same ports: another flow.
        var other = connection
        other.peer = IPAddress("198.51.100.21")!
        #expect(other != connection)
    }

    @Test func ipv6TCP() {
        let connection = flow(ipv6(nextHeader: 6, payload: tcp(40000, 22)), peer: Self.peer6)
        #expect(connection.transportProtocol == 6 && connection.ports == 40000 << 16 | 22)
    }

    @Test func otherProtocolsAndLaterFragmentsHaveNoPorts() {
        let echo = flow(ipv4(protocol: 1, payload: [8, 0, 0, 0, 0, 1, 0, 1]))
        #expect(echo.transportProtocol == 1 && echo.ports == 0)
        // A fragment after the first carries no transport header: its bytes are not ports.
        let later = flow(ipv4(protocol: 6, fragmentOffset: 0x00B9, payload: tcp(40000, 5201)))
        #expect(later.ports == 0)
        // Not a packet at all: one flow for all of them.
        #expect(flow([0x00, 1, 2, 3]).transportProtocol == 0)
    }
}
