#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATPacket
import Testing

/// The one conversion between endpoints and the kernel's socket addresses.
@Suite struct SocketAddressTests {
    static let endpoints = [IPEndpoint(address: IPAddress("192.0.2.1")!, port: 4500),
                            IPEndpoint(address: IPAddress("2001:db8::1:2")!, port: 53)]

    @Test(arguments: endpoints) func writeLeavesTheKernelsLayoutAndReadsBack(_ endpoint: IPEndpoint) {
        let storage = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
        defer { storage.deallocate() }
        UnsafeMutableRawPointer(storage).initializeMemory(as: UInt8.self, repeating: 0xEE,
                                                          count: MemoryLayout<sockaddr_storage>.size)
        let length = SocketAddress.write(endpoint, to: storage)
        let bytes = UnsafeRawBufferPointer(start: storage, count: MemoryLayout<sockaddr_storage>.size)
        switch endpoint.address {
        case .v4:
            #expect(length == socklen_t(MemoryLayout<sockaddr_in>.size))
            #expect(Array(bytes[0..<8]) == [UInt8(AF_INET), 0, 0x11, 0x94, 192, 0, 2, 1])
        case .v6:
            #expect(length == socklen_t(MemoryLayout<sockaddr_in6>.size))
            #expect(Array(bytes[0..<4]) == [UInt8(AF_INET6), 0, 0, 53])
            #expect(Array(bytes[8..<24]) == [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2])
        }
        #expect(bytes[Int(length)...].allSatisfy { $0 == 0xEE }, "nothing written past the length")
        #expect(SocketAddress.endpoint(at: UnsafeRawPointer(storage)) == endpoint)
        let (copy, copyLength) = SocketAddress.storage(for: endpoint)
        #expect(copyLength == length)
        #expect(SocketAddress.endpoint(of: copy) == endpoint)
    }
}
