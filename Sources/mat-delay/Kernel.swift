#if canImport(Glibc)
import Glibc
#endif

/// What Glibc's Swift module does not show of the kernel's packet-socket interface:
/// `<netpacket/packet.h>` is not part of the module, and `struct mmsghdr`, `recvmmsg`,
/// `sendmmsg` and `ppoll` are declared only under `_GNU_SOURCE`. The constants are the
/// kernel's ABI (`<linux/if_packet.h>`, `<linux/if_ether.h>`, `<linux/socket.h>`); the
/// functions are looked up in libc once, at start-up.
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

    /// `struct mmsghdr`: a `msghdr` and the byte count the kernel fills in.
    struct MultiMessageHeader {
        var header = msghdr()
        var length: UInt32 = 0
    }

    typealias ReceiveMany = @convention(c) (Int32, UnsafeMutableRawPointer?, UInt32, Int32, UnsafeMutableRawPointer?) -> Int32
    typealias SendMany = @convention(c) (Int32, UnsafeMutableRawPointer?, UInt32, Int32) -> Int32
    typealias PollWithTimespec = @convention(c) (UnsafeMutablePointer<pollfd>?, UInt, UnsafePointer<timespec>?, UnsafeRawPointer?) -> Int32

    /// libc's `recvmmsg`, `sendmmsg` and `ppoll`.
    struct Calls {
        let receiveMany: ReceiveMany
        let sendMany: SendMany
        let poll: PollWithTimespec

        init() throws {
            // The layout the kernel expects of struct mmsghdr on a 64-bit target.
            guard MemoryLayout<MultiMessageHeader>.offset(of: \.length) == MemoryLayout<msghdr>.size,
                  MemoryLayout<MultiMessageHeader>.stride == (MemoryLayout<msghdr>.size + 4 + 7) & ~7 else {
                throw DelayError("struct mmsghdr does not have the layout mat-delay assumes")
            }
            receiveMany = unsafeBitCast(try Self.symbol("recvmmsg"), to: ReceiveMany.self)
            sendMany = unsafeBitCast(try Self.symbol("sendmmsg"), to: SendMany.self)
            poll = unsafeBitCast(try Self.symbol("ppoll"), to: PollWithTimespec.self)
        }

        private static func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
            // RTLD_DEFAULT is the null handle in glibc.
            guard let pointer = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else {
                throw DelayError("libc has no \(name)")
            }
            return pointer
        }
    }
}

/// A failure that ends mat-delay with a message.
struct DelayError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The error text of `errno` (or of `code`).
func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

/// CLOCK_MONOTONIC in nanoseconds.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}
