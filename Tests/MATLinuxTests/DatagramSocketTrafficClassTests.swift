import MATLinux
import MATPacket
import Testing

/// The signaling sockets' DSCP mark (docs/signaling.md, "In matd"); what goes on the wire
/// is checked in the lab (`SignalingMarkLabTests`).
@Suite struct DatagramSocketTrafficClassTests {
    @Test(arguments: [AddressFamily.ipv4, .ipv6])
    func aMarkedSocketSendsAsNetworkControl(family: AddressFamily) throws {
        let socket = try DatagramSocket(family: family, port: 0)
        #expect(try socket.trafficClass() == 0, "a new socket is best effort")
        try socket.markAsNetworkControl()
        #expect(try socket.trafficClass() == 0xc0)
        #expect(DatagramSocket.networkControlTrafficClass >> 2 == 48, "CS6 is DSCP 48")
    }
}
