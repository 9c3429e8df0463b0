#if canImport(Glibc)
import Glibc
#endif
@testable import MATNode
import Testing

/// The encapsulation sockets' buffers (``EncapPath``): large enough for a burst of
/// super-packets, and `MATD_ENCAP_SOCKET_BUFFER` for measurements.
@Suite struct EncapPathTests {
    @Test func theBufferSettingTakesBytesOrKeepsTheDefault() {
        #expect(EncapPath.socketBuffer(fromEnvironment: nil) == EncapPath.defaultSocketBuffer)
        #expect(EncapPath.socketBuffer(fromEnvironment: "0") == 0)
        #expect(EncapPath.socketBuffer(fromEnvironment: "1048576") == 1_048_576)
        for bad in ["", "-1", "4M", "99999999999"] {
            #expect(EncapPath.socketBuffer(fromEnvironment: bad) == EncapPath.defaultSocketBuffer, "\(bad)")
        }
    }

    /// The kernel reports twice what was set; unprivileged, `rmem_max` caps it, so the
    /// check only holds as root (as CI runs).
    @Test(.enabled(if: getuid() == 0, "SO_RCVBUFFORCE needs CAP_NET_ADMIN"))
    func theSocketsGetTheLargeBuffers() throws {
        let path = try EncapPath(port: 0, families: [.ipv4, .ipv6])
        for socket in [path.socket4, path.socket6].compactMap({ $0 }) {
            for option in [SO_RCVBUF, SO_SNDBUF] {
                var value: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                #expect(getsockopt(socket.fileDescriptor, SOL_SOCKET, option, &value, &length) == 0)
                #expect(value >= 2 * EncapPath.defaultSocketBuffer, "option \(option): \(value)")
            }
        }
    }
}
