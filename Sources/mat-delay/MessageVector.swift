#if canImport(Glibc)
import Glibc
#endif
import MATSystem

/// The argument of one recvmmsg or sendmmsg call: `capacity` message headers, one
/// iovec each and, for receiving, one sockaddr_ll each (where the kernel says whether
/// the frame was outgoing). Allocated once; each call only repoints the iovecs.
final class MessageVector {
    let capacity: Int
    let headers: UnsafeMutablePointer<MultipleMessages.Header>
    private let vectors: UnsafeMutablePointer<iovec>
    private let addresses: UnsafeMutableRawPointer

    init(capacity: Int) {
        self.capacity = capacity
        headers = .allocate(capacity: capacity)
        headers.initialize(repeating: MultipleMessages.Header(), count: capacity)
        vectors = .allocate(capacity: capacity)
        vectors.initialize(repeating: iovec(), count: capacity)
        addresses = .allocate(byteCount: capacity * Kernel.LinkAddress.stride, alignment: 8)
        addresses.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Kernel.LinkAddress.stride)
        for index in 0..<capacity {
            headers[index].message.msg_iov = vectors + index
            headers[index].message.msg_iovlen = 1
        }
    }

    deinit {
        headers.deallocate()
        vectors.deallocate()
        addresses.deallocate()
    }

    var raw: UnsafeMutableRawPointer { UnsafeMutableRawPointer(headers) }

    /// Points message `index` at `buffer`; with `receiving`, also at its address slot
    /// (the kernel overwrites the name length and flags, so they are reset each time).
    @inline(__always)
    func set(_ index: Int, buffer: UnsafeMutableRawPointer, length: Int, receiving: Bool) {
        vectors[index].iov_base = buffer
        vectors[index].iov_len = length
        if receiving {
            headers[index].message.msg_name = addresses + index * Kernel.LinkAddress.stride
            headers[index].message.msg_namelen = socklen_t(Kernel.LinkAddress.size)
        } else {
            headers[index].message.msg_name = nil
            headers[index].message.msg_namelen = 0
        }
        headers[index].message.msg_flags = 0
        headers[index].length = 0
    }

    /// The frame's full length as the kernel reported it (more than the buffer when it
    /// was truncated: recvmmsg is called with MSG_TRUNC).
    @inline(__always)
    func receivedLength(_ index: Int) -> Int { Int(headers[index].length) }

    @inline(__always)
    func wasTruncated(_ index: Int) -> Bool { headers[index].message.msg_flags & Int32(MSG_TRUNC) != 0 }

    /// sll_pkttype of message `index`.
    @inline(__always)
    func packetType(_ index: Int) -> UInt8 {
        addresses.load(fromByteOffset: index * Kernel.LinkAddress.stride + Kernel.LinkAddress.packetTypeOffset, as: UInt8.self)
    }
}
