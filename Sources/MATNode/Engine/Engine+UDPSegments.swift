#if canImport(Glibc)
import Glibc
#endif
import MATPacket
import MATSignaling

/// UDP GSO super-packets in UDP (docs/datapath.md, "Behind NAT"): an application's
/// `UDP_SEGMENT` send reaches the TUN device whole (USO offload), and goes to the peer as
/// the datagrams the application asked for (``UDPSegmenter``), each within the path's MTU,
/// instead of as one datagram the kernel cuts into IP fragments, which NATs and firewalls
/// drop.
extension Engine {
    /// Sends the UDP super-packet at `packet` (`length` bytes, the IP header first) as its
    /// datagrams of `gsoSize` bytes to `moa`:`port`; true when handled so: sent, or (its
    /// datagrams larger than `room`, the UDP payload that goes unfragmented) dropped and
    /// answered as a tunnel answers a packet too large for it, when it must not be
    /// fragmented. False leaves it to go whole: it cannot be cut, or its datagrams do not
    /// fit and may be fragmented.
    func sendUDPSegmented(_ encap: EncapPath, packet: UnsafeRawPointer, length: Int, gsoSize: Int, room: Int,
                          to moa: IPAddress, port: UInt16, kind: EncapWire.Kind) -> Bool {
        guard encap.udpSegmenter.segment(packet, length: length, gsoSize: gsoSize,
                                         prefix: EncapPath.segmentPrefix) else { return false }
        guard encap.udpSegmenter.segmentSize <= room else {
            return answerTooBig(encap, packet: packet, length: length, room: room)
        }
        let segments = encap.udpSegmenter.count
        let sent = encap.sendSegments(encap.udpSegmenter, of: packet, to: moa, port: port, kind: kind)
        encap.counters.packetsSent &+= UInt64(sent)
        if kind == .relayed { encap.counters.relayPacketsSent &+= UInt64(sent) }
        if sent == segments {
            encap.counters.packetsSegmented &+= 1
            processor.counters.outboundPackets &+= 1
            processor.counters.outboundBytes &+= UInt64(length)
        } else {
            encap.counters.sendFailures &+= UInt64(segments - sent)
            // The kernel learned a smaller path MTU since the last lookup (a router's ICMP
            // error): the next super-packet is measured against it. These datagrams are
            // lost, as the application's own would be on such a path.
            if errno == EMSGSIZE || errno == EINVAL { encap.lookUpPathMTU(moa) }
        }
        return true
    }
}
