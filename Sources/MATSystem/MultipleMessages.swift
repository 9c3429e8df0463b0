#if canImport(Glibc)
import Glibc
#endif
import CSystem

/// Batched datagram I/O (`recvmmsg`, `sendmmsg`) and `ppoll`, which Swift's Glibc module
/// does not show: one system call moves many datagrams.
public enum MultipleMessages {
    /// The kernel's `struct mmsghdr`: a message header and the byte count the kernel fills in.
    public struct Header {
        public var message = msghdr()
        public var length: UInt32 = 0
        public init() {}
    }

    /// Distance between two headers in a vector.
    public static let headerStride = MemoryLayout<Header>.stride

    /// Whether `Header` has the kernel's layout (checked once at start by the users).
    public static var layoutMatches: Bool {
        MemoryLayout<Header>.offset(of: \.length) == mat_mmsghdr_length_offset()
            && MemoryLayout<Header>.stride == mat_mmsghdr_size()
    }

    /// `MSG_WAITFORONE`: block for the first datagram only, then take what is queued.
    public static let waitForOne: Int32 = 0x10000

    /// `recvmmsg`: fills up to `count` headers at `vector`; the number filled, or -1 and errno.
    @inline(__always)
    public static func receive(_ fd: Int32, _ vector: UnsafeMutableRawPointer, count: Int, flags: Int32) -> Int32 {
        mat_recvmmsg(fd, vector, UInt32(count), flags, nil)
    }

    /// `sendmmsg`: sends up to `count` headers at `vector`; the number sent, or -1 and errno.
    @inline(__always)
    public static func send(_ fd: Int32, _ vector: UnsafeMutableRawPointer, count: Int, flags: Int32) -> Int32 {
        mat_sendmmsg(fd, vector, UInt32(count), flags)
    }

    /// `ppoll` without a signal mask: waits on `count` descriptors at most `timeout`
    /// (nil: without limit), with nanosecond resolution.
    @inline(__always)
    public static func poll(_ descriptors: UnsafeMutablePointer<pollfd>, count: Int,
                            timeout: UnsafePointer<timespec>?) -> Int32 {
        mat_ppoll(descriptors, UInt(count), timeout)
    }
}
