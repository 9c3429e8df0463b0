#if canImport(Glibc)
import Glibc
#endif
import CMnl

/// Reads one datagram from a libmnl netlink socket into `buffer`, read again when a
/// signal interrupted it: the byte count, or -1 with `errno` set.
func receiveRetryingInterrupts(_ socket: OpaquePointer, into buffer: UnsafeMutableRawBufferPointer) -> Int {
    var count: Int
    repeat {
        count = mnl_socket_recvfrom(socket, buffer.baseAddress, buffer.count)
    } while count < 0 && errno == EINTR
    return count
}
