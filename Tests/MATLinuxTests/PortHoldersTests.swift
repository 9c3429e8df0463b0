#if canImport(Glibc)
import Glibc
#endif
@testable import MATLinux
import MATPacket
import Testing

/// Who holds a UDP port (``PortHolders``), for matd's error when a local user took
/// `signaling-port` or `encap-port` first (docs/security.md, the local user).
@Suite struct PortHoldersTests {
    static let udp = """
           sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
         1897: 0100007F:B9B4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 9906758 2 0000000015501f87 0
         1898: 0A7100CB:1D74 00000000:0000 07 00000000:00000000 00:00000000 00000000 65534        0 9906760 2 0000000015501f88 0
         1899: 00000000:1D74 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 9906761 2 0000000015501f89 0
        """
    static let udp6 = """
          sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
         1898: 00000000000000000000000001000000:1D74 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 9906759 2 00000000ef77b119 0
         1899: B80D0120000C000000000000320100000:1D74 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 9906762 2 00000000ef77b119 0
        """

    @Test func theKernelsListingIsReadWithItsByteOrder() {
        let four = PortHolders.parse(Self.udp, family: .ipv4, port: 7540)
        #expect(four == [PortHolder(address: IPAddress("203.0.113.10")!, port: 7540, uid: 65534, inode: 9906760),
                         PortHolder(address: IPAddress("0.0.0.0")!, port: 7540, uid: 1000, inode: 9906761)])
        #expect(PortHolders.parse(Self.udp, family: .ipv4, port: 47540).map(\.address) == [IPAddress("127.0.0.1")!])
        // The second IPv6 line has 33 hex digits: skipped, not guessed at.
        #expect(PortHolders.parse(Self.udp6, family: .ipv6, port: 7540)
                == [PortHolder(address: IPAddress("::1")!, port: 7540, uid: 0, inode: 9906759)])
        #expect(PortHolders.parse(Self.udp, family: .ipv4, port: 7541).isEmpty)
    }

    @Test func anyTextIsReadWithoutATrap() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789ABCDEFabcdef: \n\t-xyz")
        for _ in 0..<2_000 {
            let text = String((0..<Int.random(in: 0..<400, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
            _ = PortHolders.parse(text, family: .ipv4, port: 7540)
            _ = PortHolders.parse(text, family: .ipv6, port: 7540)
            _ = PortHolders.parse(Self.udp + text, family: .ipv4, port: 7540)
        }
        var truncated = Self.udp6
        while !truncated.isEmpty {
            _ = PortHolders.parse(truncated, family: .ipv6, port: 7540)
            truncated.removeLast()
        }
    }

    /// A holder names itself (prctl PR_SET_NAME takes any bytes): its control characters
    /// never reach matd's log as they are.
    @Test func aHoldersNameCannotWriteLinesIntoTheLog() {
        #expect(PortHolders.printable("evil\nmatd: forged line\u{1B}[2J\u{7F}") == "evil?matd: forged line?[2J?")
        #expect(PortHolders.printable("python3") == "python3")
    }

    /// The real thing: a port this process holds cannot be bound again, and the error
    /// says which setting chose it and that this very process holds it.
    @Test func aTakenPortIsRefusedWithItsRoleAndHolder() throws {
        // A free port: one of 20 random ones (another program may hold any single one).
        var found: (UInt16, DatagramSocket)?
        for _ in 0..<20 where found == nil {
            let port = UInt16.random(in: 40_000...60_000)
            if let socket = try? DatagramSocket(family: .ipv4, port: port) { found = (port, socket) }
        }
        let (port, first) = try #require(found, "no free UDP port among 20 random ones")
        #expect(PortHolders.udp(port: port).contains { $0.pid == getpid() && $0.uid == getuid() })
        do {
            _ = try DatagramSocket(family: .ipv4, port: port, role: "signaling-port")
            Issue.record("port \(port) was bound twice")
        } catch {
            let text = "\(error)"
            #expect(text.contains("bind UDP port \(port) (IPv4, signaling-port)"), "\(text)")
            #expect(text.contains("held by pid \(getpid()) ("), "\(text)")
            #expect(text.contains("of uid \(getuid()) at 0.0.0.0:\(port)"), "\(text)")
            #expect(text.contains("set another signaling-port"), "\(text)")
        }
        withExtendedLifetime(first) {}
    }
}
