import MATLinux
import MATPacket
import MATSignaling
import MATSystem

/// The answers to packets too large for the UDP encapsulation (docs/datapath.md, "Path
/// MTU in UDP"): the preallocated buffer an answer is written into (a plain virtio
/// header, then ``TooBigMessage``) and the budget that limits how many go, on the engine
/// thread only.
///
/// A peer reached in UDP has less room per packet than the TUN device's MTU promises (the
/// outer IP and UDP headers, the encapsulation's 8 bytes and the virtio header's 10). A
/// TCP packet is cut to fit (``TCPSegmenter``), a UDP super-packet into its datagrams
/// (``UDPSegmenter``); any other packet that would not fit and must not be fragmented
/// (IPv4 with DF, IPv6 when the room is at least 1280 bytes), and a UDP super-packet whose
/// datagrams would not, is dropped and answered as a tunnel answers it, so that the
/// sender's kernel learns the smaller MTU for that peer's HoA. The rest (IPv4 without DF,
/// IPv6 under 1280) goes in fragmented datagrams, as before.
final class TooBigAnswers {
    /// At most `rate` answers a second after a burst of `burst` (Linux allows 1000 ICMP
    /// errors a second; one answer is enough per destination and sender, which then
    /// keeps its packets small, so a few dozen a second is plenty).
    static let rate: UInt32 = 50, burst: UInt32 = 20
    private(set) var budget = TokenBucket(rate: rate, burst: burst)
    /// The virtio header (zero: a plain packet, checksums complete) and the answer.
    let buffer: UnsafeMutableRawPointer
    static let bufferSize = VirtioNetHeader.size + TooBigMessage.capacity

    init() {
        buffer = .allocate(byteCount: Self.bufferSize, alignment: 16)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: Self.bufferSize)
    }

    deinit { buffer.deallocate() }

    /// The largest inner packet that goes in one datagram of `room` bytes (its UDP
    /// payload): the MTU the answer tells.
    @inline(__always)
    static func mtu(room: Int) -> Int { room - EncapWire.headerLength - VirtioNetHeader.size }

    /// Whether an answer may go at `now` (milliseconds); takes from the budget when so.
    func mayAnswer(now: UInt64) -> Bool { budget.take(now: now) }
}

extension Engine {
    /// Drops the packet at `packet` (`length` bytes, the IP header first: no GSO, or a UDP
    /// super-packet whose datagrams are too large), which is too large for a datagram of
    /// `room` bytes, and answers it with ICMP "fragmentation
    /// needed" or ICMPv6 Packet Too Big written into the TUN device, when it must not be
    /// fragmented; true when the packet was handled so (answered, or dropped because the
    /// answers' budget is spent), false when it goes fragmented. Only for such packets:
    /// off the per-packet path.
    @inline(never)
    func answerTooBig(_ encap: EncapPath, packet: UnsafeRawPointer, length: Int, room: Int) -> Bool {
        let answers = encap.tooBig
        let mtu = TooBigAnswers.mtu(room: room)
        let answerLength = TooBigMessage.write(answering: packet, length: length, mtu: mtu,
                                               into: answers.buffer + VirtioNetHeader.size)
        guard answerLength > 0 else { return false }
        guard answers.mayAnswer(now: MonotonicClock.milliseconds()) else {
            encap.counters.tooBigLimited &+= 1
            return true
        }
        do {
            try tun.write(UnsafeRawBufferPointer(start: answers.buffer, count: VirtioNetHeader.size + answerLength))
            encap.counters.tooBigAnswered &+= 1
        } catch {
            processor.counters.engineDrops[Int(EngineDropReason.writeFailed.rawValue)] &+= 1
        }
        return true
    }
}
