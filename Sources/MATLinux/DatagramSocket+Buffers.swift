#if canImport(Glibc)
import Glibc
#endif

extension DatagramSocket {
    /// Sets the kernel's receive and send buffers of the socket to `bytes` each:
    /// SO_RCVBUFFORCE and SO_SNDBUFFORCE when privileged, so `net.core.rmem_max` and
    /// `wmem_max` do not cap them, the plain options otherwise (capped). The kernel
    /// doubles the value for its bookkeeping.
    public func setBuffers(bytes: Int32) throws(SystemError) {
        var size = bytes
        let length = socklen_t(MemoryLayout<Int32>.size)
        for (forced, plain, name) in [(SO_RCVBUFFORCE, SO_RCVBUF, "receive"), (SO_SNDBUFFORCE, SO_SNDBUF, "send")]
        where setsockopt(fileDescriptor, SOL_SOCKET, forced, &size, length) != 0
            && setsockopt(fileDescriptor, SOL_SOCKET, plain, &size, length) != 0 {
            throw SystemError("set the UDP socket's \(name) buffer to \(bytes) bytes", errno: errno)
        }
    }
}
