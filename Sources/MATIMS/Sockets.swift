#if canImport(Glibc)
import Glibc
#endif
import MATIMSCore
import MATPacket
import MATSystem

/// Why the server could not start.
public struct IMSServerError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Thin wrappers over the BSD socket calls the listeners use.
enum Sockets {
    /// A socket bound to `endpoint`, non-blocking, close-on-exec.
    static func bound(_ endpoint: IPEndpoint, stream: Bool) throws(IMSServerError) -> Int32 {
        let family = endpoint.address.family == .ipv4 ? AF_INET : AF_INET6
        let type = (stream ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)) | Int32(SOCK_CLOEXEC.rawValue)
            | Int32(SOCK_NONBLOCK.rawValue)
        let fd = socket(family, type, 0)
        guard fd >= 0 else { throw IMSServerError("socket: \(errnoText())") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if family == AF_INET6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        if !stream {
            // Several UDP threads share the port, the kernel spreading datagrams by flow.
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
            var size: Int32 = 4 << 20
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        let result = SocketAddress.with(endpoint) { bind(fd, $0, $1) }
        guard result == 0 else {
            let reason = errnoText()
            close(fd)
            throw IMSServerError("bind \(stream ? "TCP" : "UDP") \(endpoint): \(reason)")
        }
        if stream {
            guard listen(fd, 128) == 0 else {
                let reason = errnoText()
                close(fd)
                throw IMSServerError("listen \(endpoint): \(reason)")
            }
        }
        return fd
    }

    static func localEndpoint(_ fd: Int32) -> IPEndpoint? {
        let (result, endpoint) = SocketAddress.receiving { getsockname(fd, $0, $1) }
        return result == 0 ? endpoint : nil
    }

    /// Sends one datagram.
    static func send(_ fd: Int32, _ bytes: [UInt8], to endpoint: IPEndpoint) -> Bool {
        let sent = bytes.withUnsafeBytes { buffer in
            SocketAddress.with(endpoint) { sendto(fd, buffer.baseAddress, buffer.count, 0, $0, $1) }
        }
        return sent == bytes.count
    }

    /// Receives one datagram, if one is waiting.
    static func receive(_ fd: Int32, into buffer: inout [UInt8]) -> (Int, IPEndpoint?)? {
        let (n, source) = buffer.withUnsafeMutableBytes { raw in
            SocketAddress.receiving { recvfrom(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT), $0, $1) }
        }
        guard n >= 0 else { return nil }
        return (n, source)
    }

    /// Waits until one of `fds` is readable (or `timeout` ms pass; -1 waits forever).
    /// Returns the readable flags per descriptor.
    static func waitReadable(_ fds: [Int32], timeout: Int32) -> [Bool] {
        var polls = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let n = poll(&polls, nfds_t(polls.count), timeout)
        guard n > 0 else { return Array(repeating: false, count: fds.count) }
        return polls.map { $0.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 }
    }
}

extension Sockets {
    /// Waits until `fd` can take more data or `stop` is readable (or `timeout` ms pass).
    static func waitWritable(_ fd: Int32, stop: Int32, timeout: Int32) -> (writable: Bool, stopped: Bool) {
        var polls = [pollfd(fd: fd, events: Int16(POLLOUT), revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
        guard poll(&polls, 2, timeout) > 0 else { return (false, false) }
        return (polls[0].revents & Int16(POLLOUT | POLLHUP | POLLERR) != 0, polls[1].revents & Int16(POLLIN) != 0)
    }
}

/// `recvmmsg`/`sendmmsg` batches (MATSystem's `MultipleMessages`): one system call for
/// every datagram queued, and one for all their answers.
final class DatagramBatch {
    static let headerStride = MultipleMessages.headerStride

    let capacity: Int
    let slotSize: Int
    private let buffers: UnsafeMutableRawPointer
    private let names: UnsafeMutablePointer<sockaddr_storage>
    private let receiveIOV: UnsafeMutablePointer<iovec>
    private let receiveHeaders: UnsafeMutableRawPointer
    private let sendIOV: UnsafeMutablePointer<iovec>
    private let sendHeaders: UnsafeMutableRawPointer

    init(capacity: Int = 32, slotSize: Int = 16 * 1024) {
        precondition(MultipleMessages.layoutMatches, "struct mmsghdr does not have the layout MATSystem assumes")
        self.capacity = capacity
        self.slotSize = slotSize
        buffers = .allocate(byteCount: capacity * slotSize, alignment: 16)
        names = .allocate(capacity: capacity)
        receiveIOV = .allocate(capacity: capacity)
        sendIOV = .allocate(capacity: capacity)
        receiveHeaders = .allocate(byteCount: capacity * Self.headerStride, alignment: 8)
        sendHeaders = .allocate(byteCount: capacity * Self.headerStride, alignment: 8)
        receiveHeaders.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Self.headerStride)
        sendHeaders.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Self.headerStride)
    }

    deinit {
        buffers.deallocate()
        names.deallocate()
        receiveIOV.deallocate()
        sendIOV.deallocate()
        receiveHeaders.deallocate()
        sendHeaders.deallocate()
    }

    /// Receives up to `capacity` datagrams: with `blocking`, waits (up to the socket's
    /// receive timeout) for the first and takes whatever else is queued; otherwise only
    /// what is queued. Datagrams larger than a slot come back empty (counted as malformed).
    func receive(_ fd: Int32, blocking: Bool, oversized: inout Int) -> [IMSRequest]? {
        for i in 0..<capacity {
            receiveIOV[i] = iovec(iov_base: buffers + i * slotSize, iov_len: slotSize)
            var header = msghdr()
            header.msg_name = UnsafeMutableRawPointer(names + i)
            header.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            header.msg_iov = receiveIOV + i
            header.msg_iovlen = 1
            (receiveHeaders + i * Self.headerStride).storeBytes(of: header, as: msghdr.self)
        }
        let n = MultipleMessages.receive(fd, receiveHeaders, count: capacity,
                                         flags: blocking ? MultipleMessages.waitForOne : Int32(MSG_DONTWAIT))
        guard n > 0 else { return nil }
        var requests: [IMSRequest] = []
        requests.reserveCapacity(Int(n))
        for i in 0..<Int(n) {
            let slot = receiveHeaders + i * Self.headerStride
            let header = slot.load(as: MultipleMessages.Header.self)
            let length = Int(header.length)
            let source = SocketAddress.endpoint(at: UnsafeRawPointer(names + i))
            if header.message.msg_flags & Int32(MSG_TRUNC) != 0 {
                oversized += 1
                requests.append(IMSRequest(bytes: [], source: source))
                continue
            }
            let bytes = Array(UnsafeRawBufferPointer(start: buffers + i * slotSize, count: length))
            requests.append(IMSRequest(bytes: bytes, source: source))
        }
        return requests
    }

    /// Sends replies to the senders of the batch just received (same order; an empty
    /// reply list means none for that request).
    func send(_ fd: Int32, replies: [[[UInt8]]], to requests: [IMSRequest]) {
        var outgoing: [(Int, [UInt8])] = []
        for (index, reply) in replies.enumerated() {
            for message in reply { outgoing.append((index, message)) }
        }
        guard !outgoing.isEmpty else { return }
        var start = 0
        while start < outgoing.count {
            let chunk = outgoing[start..<min(start + capacity, outgoing.count)]
            // Copy replies into the slots: their memory must stay put during the call.
            var count = 0
            for (index, message) in chunk where message.count <= slotSize {
                let base = buffers + count * slotSize
                message.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                sendIOV[count] = iovec(iov_base: base, iov_len: message.count)
                var header = msghdr()
                if let source = requests[index].source {
                    let (storage, length) = SocketAddress.storage(for: source)
                    (names + count).pointee = storage
                    header.msg_name = UnsafeMutableRawPointer(names + count)
                    header.msg_namelen = length
                } else {
                    continue
                }
                header.msg_iov = sendIOV + count
                header.msg_iovlen = 1
                (sendHeaders + count * Self.headerStride).storeBytes(of: header, as: msghdr.self)
                count += 1
            }
            var sent = 0
            while sent < count {
                let n = MultipleMessages.send(fd, sendHeaders + sent * Self.headerStride, count: count - sent, flags: 0)
                if n <= 0 {
                    if n < 0 && errno == EINTR { continue }
                    break
                }
                sent += Int(n)
            }
            start += chunk.count
        }
    }
}
