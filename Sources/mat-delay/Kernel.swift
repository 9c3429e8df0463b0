#if canImport(Glibc)
import Glibc
#endif

/// What Glibc's Swift module does not show of the kernel's packet-socket interface
/// (`<netpacket/packet.h>` is not part of it): the constants are the kernel's ABI
/// (`<linux/if_packet.h>`, `<linux/if_ether.h>`, `<linux/socket.h>`). The batched calls
/// and `ppoll` come from MATSystem's `MultipleMessages`.
enum Kernel {
    static let ethernetProtocolAll: UInt16 = 0x0003    // ETH_P_ALL
    static let solPacket: Int32 = 263                  // SOL_PACKET
    static let packetAddMembership: Int32 = 1          // PACKET_ADD_MEMBERSHIP
    static let packetStatistics: Int32 = 6             // PACKET_STATISTICS
    static let packetMembershipPromiscuous: UInt16 = 1 // PACKET_MR_PROMISC
    static let packetOutgoing: UInt8 = 4               // PACKET_OUTGOING (sll_pkttype)

    /// `struct sockaddr_ll`: 20 bytes; the fields mat-delay reads or writes, by offset.
    enum LinkAddress {
        static let size = 20
        static let familyOffset = 0       // u16 sll_family
        static let protocolOffset = 2     // be16 sll_protocol
        static let interfaceOffset = 4    // s32 sll_ifindex
        static let packetTypeOffset = 10  // u8 sll_pkttype
        /// Where each one lives in a buffer of several (keeps the s32 aligned).
        static let stride = 24
    }

    /// `struct packet_mreq`: s32 mr_ifindex, u16 mr_type, u16 mr_alen, u8 mr_address[8].
    enum Membership {
        static let size = 16
        static let interfaceOffset = 0
        static let typeOffset = 4
    }
}

/// A failure that ends mat-delay with a message.
struct DelayError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The error text of `errno` (or of `code`).
func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }
