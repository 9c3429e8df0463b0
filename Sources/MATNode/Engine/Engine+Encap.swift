#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATPacket
import MATSignaling

/// A change of where traffic goes in UDP, from the service's ``EncapPolicy``.
public enum EncapCommand: Sendable {
    /// Send `moa`'s traffic in UDP to its `port` (until `.stop`).
    case start(IPAddress, port: UInt16)
    case stop(IPAddress)
    /// A relay takes `key`, which the IMS binds to the HoA, for that HoA's registrations.
    case relayKey(IPAddress, VerifyingKey)
    /// `moa`'s traffic in UDP goes through the relay at once (a peer's IMS record at it
    /// names it), or no longer does (no record names it now).
    case relayAtOnce(IPAddress, Bool)
}

/// The UDP encapsulation's per-packet work on the engine thread (docs/datapath.md,
/// "Behind NAT"). A peer whose traffic goes in UDP gets the application's packet as it
/// was read, HoA to HoA and untranslated (its checksums, partial or not, stay valid),
/// behind an 8-byte header, from the buffer it was read into; a TCP super-packet, or a
/// TCP packet too large for the path, goes as path-MTU-sized segments (``TCPSegmenter``),
/// a UDP super-packet as its datagrams (``UDPSegmenter``).
/// Only runs while some peer's traffic goes in UDP (`encapActive`); otherwise the direct
/// path pays one predictable branch.
extension Engine {
    /// Asks the engine thread to start or stop sending a peer's traffic in UDP.
    public func encapsulate(_ command: EncapCommand) {
        encapCommands.withLock { $0.append(command) }
        wakeup.signal()
    }

    /// Wakes the engine thread, which forgets the UDP paths of peers whose keepalives
    /// stopped when it wakes (checked at most once a second): an idle engine sleeps until
    /// something wakes it.
    public func expireEncapEndpoints() { wakeup.signal() }

    /// The encapsulation's counters as of the last publication; nil when it is off.
    public var encapCounters: EncapCounters? { encap.map { $0.withRegistrations(publishedEncap.withLock { $0 }) } }

    /// Applies the service's commands and expires idle UDP paths; returns the MoAs that went
    /// in or out of UDP meanwhile (a keepalive's too), which the service is told of.
    func applyEncapCommands() -> Set<IPAddress> {
        guard let encap else { return [] }
        let pending = encapCommands.withLock { queue -> [EncapCommand] in
            defer { queue.removeAll() }
            return queue
        }
        let now = MonotonicClock.milliseconds()
        for command in pending {
            switch command {
            case .start(let moa, let port):
                encap.endpoints.start(moa, port: port, now: now)
                if encap.relayServer != nil { encap.fallback.encapsulated(moa, now: now) }
            case .stop(let moa):
                encap.endpoints.stop(moa)
                encap.fallback.stopped(moa)
            case .relayKey(let hoa, let key):
                encap.relay?.learn(key, for: hoa)
            case .relayAtOnce(let moa, let atOnce):
                encap.fallback.relayAtOnce(moa, atOnce)
            }
        }
        if now >= lastEncapExpiry + 1_000 {
            lastEncapExpiry = now
            encap.refreshPathMTUs(now: now)
            for moa in encap.endpoints.expire(now: now) {
                log("matd: no UDP from \(moa) for \(encap.endpoints.lifetime / 1_000) s: its traffic goes direct again")
            }
        }
        followRelayFallback(encap, now: now)
        encapActive = !encap.endpoints.isEmpty
        return publishEncapMoAs(encap)
    }

    /// How many MoAs are in UDP now, and those that went in or out since the last call, for
    /// the inbound diversion to let theirs by. One taker (the service): it keeps its own set
    /// and applies the changes (``EncapMoAChanges/apply(to:)``), O(them) a turn.
    public func takeEncapsulatedMoAChanges() -> EncapMoAChanges { publishedEncapMoAs.withLock { $0.take() } }

    /// Sends the traffic of the peers in UDP that ``RelayFallback`` says so through the
    /// relay (no keepalive from them for three intervals: hole punching failed), and that
    /// of the others to their MoAs (a keepalive came: the hole opened after all). Costs
    /// what changed and what came due (at most ``RelayFallback/followLimit`` a call), not
    /// a look at every peer in UDP; their lines go through ``PerPeerLogLimit``.
    func followRelayFallback(_ encap: EncapPath, now: UInt64) {
        guard let relay = encap.relayServer else { return }
        logFallbackSummary(encap, encap.fallbackLog.takeSummary(now: now))
        guard encap.fallback.needsFollow(now: now) else { return }
        let changes = encap.fallback.follow(now: now)
        for moa in changes.relayed {
            EventLog.shared.post("encapsulation", ["peer": "\(moa)", "mode": "relay"])
            guard admitFallbackLine(encap, now: now) else { continue }
            if encap.fallback.isRelayedAtOnce(moa) {
                log("matd: \(moa) is reached through the relay \(relay.address): its traffic goes there now")
            } else {
                log("matd: no keepalive from \(moa) for \(3 * encap.fallback.keepaliveInterval / 1_000) s: its traffic "
                    + "goes through the relay \(relay.address) now")
            }
        }
        // One out of UDP altogether (stopped) goes direct without a word.
        for moa in changes.direct where encap.endpoints.port(for: moa) != nil {
            EventLog.shared.post("encapsulation", ["peer": "\(moa)", "mode": "udp"])
            guard admitFallbackLine(encap, now: now) else { continue }
            log("matd: a keepalive came from \(moa): its traffic goes to it in UDP again, not through the relay")
        }
    }

    private func admitFallbackLine(_ encap: EncapPath, now: UInt64) -> Bool {
        let (write, summary) = encap.fallbackLog.admit(now: now)
        logFallbackSummary(encap, summary)
        return write
    }

    private func logFallbackSummary(_ encap: EncapPath, _ left: Int?) {
        guard let left else { return }
        log("matd: and \(left) more peer(s) went to the relay or back from it (\(encap.fallbackLog.perWindow) logged "
            + "per \(encap.fallbackLog.window / 1_000) s; each posted as an encapsulation event)")
    }

    /// Tells the service of the MoAs that went in or out of UDP since the last call and
    /// returns them: O(them). Never the set itself: a copy held by another thread would make
    /// the engine's next change copy all of it.
    func publishEncapMoAs(_ encap: EncapPath) -> Set<IPAddress> {
        let changed = encap.endpoints.takeChanges()
        guard !changed.isEmpty else { return [] }
        publishedEncapMoAs.withLock { $0.note(changed, in: encap.endpoints) }
        return changed
    }

    /// Sends the application's packet in `buffer` in UDP when its peer's traffic goes
    /// there; false leaves it to the translation. Held peers are left to the processor,
    /// which drops and keeps their packets as for the direct path.
    @inline(__always)
    func sendEncapsulated(length: Int) -> Bool {
        guard let encap, length >= VirtioNetHeader.size + 20 else { return false }
        let packet = buffer + VirtioNetHeader.size
        guard let moa = processor.encapsulationDestination(UnsafeRawPointer(packet), length: length - VirtioNetHeader.size),
              var port = encap.endpoints.port(for: moa) else { return false }
        // Through the relay when hole punching failed (``RelayFallback``): the same
        // datagram, of the relayed kind, to the relay, which finds the peer by the inner
        // destination HoA.
        var target = moa, kind = EncapWire.Kind.packet
        if !encap.relayedMoAs.isEmpty, encap.relayedMoAs.contains(moa), let relay = encap.relayServer {
            target = relay.address
            port = relay.port
            kind = .relayed
        }
        let virtio = VirtioNetHeader(loadingFrom: UnsafeRawPointer(buffer))
        let gso = virtio.gsoTypeRaw & 0x7F
        let tcpSuperPacket = gso == VirtioNetHeader.GSOType.tcpv4.rawValue || gso == VirtioNetHeader.GSOType.tcpv6.rawValue
        let room = kind == .relayed ? encap.relayedRoom(to: target) : encap.datagramRoom(to: target)
        // A UDP super-packet goes as the datagrams its sender asked for (``UDPSegmenter``).
        if gso == VirtioNetHeader.GSOType.udpL4.rawValue, encap.segmentation != .off,
           sendUDPSegmented(encap, packet: UnsafeRawPointer(packet), length: length - VirtioNetHeader.size,
                            gsoSize: Int(virtio.gsoSize), room: room, to: target, port: port, kind: kind) {
            return true
        }
        if encap.segmentation != .off && (tcpSuperPacket || EncapWire.headerLength + length > room) {
            // Cut to the path's MTU (a TCP packet; anything else goes whole below, and the
            // kernel fragments it): fragments would be put together again at the NAT and
            // at the peer, and one lost loses them all.
            if sendSegmented(encap, packet: UnsafeRawPointer(packet), length: length - VirtioNetHeader.size, room: room,
                             gsoSize: tcpSuperPacket ? Int(virtio.gsoSize) : 0, to: target, port: port, kind: kind) {
                processor.counters.outboundPackets &+= 1
                processor.counters.outboundBytes &+= UInt64(length - VirtioNetHeader.size)
                return true
            }
        }
        // Too large once in UDP and not to be fragmented (IPv4 with DF, IPv6): dropped and
        // answered as a tunnel does, with the MTU that fits (``TooBigAnswers``).
        if EncapWire.headerLength + length > room, gso == 0,
           answerTooBig(encap, packet: UnsafeRawPointer(packet), length: length - VirtioNetHeader.size, room: room) {
            return true
        }
        let datagram = buffer - EncapWire.headerLength
        EncapWire.writeHeader(kind, at: datagram)
        let whole = EncapWire.headerLength + length
        if whole > room ? encap.sendFragmentable(UnsafeRawPointer(datagram), length: whole, to: target, port: port)
                        : encap.send(UnsafeRawPointer(datagram), length: whole, to: target, port: port) {
            encap.counters.packetsSent &+= 1
            if kind == .relayed { encap.counters.relayPacketsSent &+= 1 }
            processor.counters.outboundPackets &+= 1
            processor.counters.outboundBytes &+= UInt64(length - VirtioNetHeader.size)
        } else {
            encap.counters.sendFailures &+= 1
        }
        return true
    }

    /// Cuts the TCP packet at `packet` into segments that fit `room` and sends them; false
    /// when it cannot be cut (it goes whole). When the kernel refuses segments because it
    /// learned a smaller path MTU since the last lookup (a router's ICMP error for a
    /// datagram sent with DF), the packet is cut again to the new MTU and sent once more,
    /// whole (the receiving TCP drops what it already has).
    private func sendSegmented(_ encap: EncapPath, packet: UnsafeRawPointer, length: Int, room: Int, gsoSize: Int,
                               to moa: IPAddress, port: UInt16, kind: EncapWire.Kind) -> Bool {
        var room = room
        for attempt in 0..<2 {
            guard encap.segmenter.segment(packet, length: length, limit: room, gsoSize: gsoSize,
                                          prefix: EncapPath.segmentPrefix) else { return attempt > 0 }
            let segments = encap.segmenter.count
            let sent = encap.sendSegments(of: packet, to: moa, port: port, kind: kind)
            encap.counters.packetsSent &+= UInt64(sent)
            if kind == .relayed { encap.counters.relayPacketsSent &+= UInt64(sent) }
            if sent == segments {
                encap.counters.packetsSegmented &+= 1
                return true
            }
            encap.counters.sendFailures &+= UInt64(segments - sent)
            guard errno == EMSGSIZE || errno == EINVAL else { return true }
            encap.lookUpPathMTU(moa)
            let smaller = kind == .relayed ? encap.relayedRoom(to: moa) : encap.datagramRoom(to: moa)
            guard smaller < room else { return true }
            room = smaller
        }
        return true
    }

    /// Reads what waits on an encapsulation socket (up to 64 reads, each a datagram or,
    /// with `UDP_GRO`, a train of datagrams of one sender the kernel kept together);
    /// returns how many carried packets went into the TUN device. Consecutive TCP segments
    /// of one flow go in as one super-packet (``TCPCoalescer``).
    func receiveEncapsulated(descriptor: Int32) -> Int {
        guard let encap else { return 0 }
        guard let socket = encap.socket4?.fileDescriptor == descriptor ? encap.socket4 : encap.socket6 else { return 0 }
        var delivered = 0
        for _ in 0..<64 {
            guard let (length, source, sourcePort, segmentSize) = encap.receiveTrain(socket) else { break }
            guard length <= EncapPath.receiveSize else {
                encap.counters.refused &+= 1
                continue
            }
            let step = segmentSize > 0 ? segmentSize : length
            var offset = 0
            while offset < length {
                let size = min(step, length - offset)
                delivered += receiveDatagram(encap, at: encap.receiveBuffer + offset, length: size, source: source,
                                             sourcePort: sourcePort)
                offset += size
            }
            flushCoalesced(encap)
        }
        return delivered
    }

    /// One datagram at `base`: a carried packet (1 when it went into the TUN device, or
    /// joined the packet being put together for it) or a control datagram (0).
    private func receiveDatagram(_ encap: EncapPath, at base: UnsafeMutableRawPointer, length: Int,
                                 source: IPAddress, sourcePort: UInt16) -> Int {
        let datagram = UnsafeRawBufferPointer(start: base, count: length)
        guard let frame = EncapWire.parse(datagram) else {
            encap.counters.refused &+= 1
            return 0
        }
        switch frame {
        case .packet:
            return deliverEncapsulated(encap, at: base, length: length, source: source, sourcePort: sourcePort) ? 1 : 0
        case .keepalive:
            guard isPeerMoA(source) else { encap.counters.refused &+= 1; return 0 }
            encap.counters.keepalivesReceived &+= 1
            let now = MonotonicClock.milliseconds()
            encap.endpoints.heard(source, port: sourcePort, now: now)
            // A first keepalive's MoA is published by the run loop after this read.
            encapActive = true
            if encap.relayServer != nil {
                encap.fallback.heard(source, now: now)
                if encap.relayedMoAs.contains(source) { followRelayFallback(encap, now: now) }
            }
        case .probeRequest:
            // Answered to the encapsulation port, not the port it came from, and from
            // another port than ours: what the requester's NAT has not seen (not even
            // the keepalives of a node already in UDP) is the point of the probe.
            guard isPeerMoA(source), encap.mayAnswerProbe(now: MonotonicClock.milliseconds()) else {
                encap.counters.refused &+= 1
                return 0
            }
            let nonce = Array(datagram[EncapWire.headerLength...])
            do {
                try encap.sendProbeAnswer(EncapWire.control(.probeAnswer, nonce: nonce), to: source)
                encap.counters.probesAnswered &+= 1
            } catch {
                encap.counters.sendFailures &+= 1
            }
        case .probeAnswer:
            encap.counters.probeAnswersReceived &+= 1
            probeAnswerHandler(source, Array(datagram[EncapWire.headerLength...]))
        case .registration:
            // Relay kinds (docs/signaling.md, "Relay"): only a relay takes registrations.
            guard encap.relay != nil else { encap.counters.refused &+= 1; return 0 }
            let sender = RelayTable.Binding(address: source, port: sourcePort)
            switch encap.relay?.register(datagram, from: sender, now: MonotonicClock.milliseconds()) {
            case .accepted?:
                // The relay's half of the secret's key agreement (``RelayAnswer``).
                if let answer = encap.relay?.answer {
                    do {
                        try encap.sendControl(answer, to: sender.address, port: sender.port)
                    } catch {
                        encap.counters.sendFailures &+= 1
                    }
                }
            case .noKey(let hoas)?, .learnedKeyFailed(let hoas)?:
                // The service looks the keys up in the IMS, within its bounds: every HoA
                // the registration lists (at most ``RelayRegistration/maximumHoAs``).
                for hoa in hoas { encap.relayKeyHandler(hoa) }
            default:
                break
            }
        case .registrationAnswer:
            // Only from this node's relay; what it says is checked by the secrets
            // (an answer to no exchange key of this node's changes nothing).
            guard encap.relay == nil, encap.relayServer == RelayTable.Binding(address: source, port: sourcePort) else {
                encap.counters.refused &+= 1
                return 0
            }
            guard let answer = RelayAnswer(datagram),
                  encap.relaySecrets.withLock({ $0.take(answer, now: MonotonicClock.milliseconds()) }) else {
                encap.counters.relayAnswersRefused &+= 1
                encap.counters.refused &+= 1
                return 0
            }
        case .relayedSignal:
            receiveRelayedSignal(encap, at: base, length: length, source: source, sourcePort: sourcePort)
        case .relayed:
            // A node that is no relay takes a relayed packet only from its own relay.
            guard encap.relay != nil else {
                return deliverRelayed(encap, at: base, length: length, source: source, sourcePort: sourcePort) ? 1 : 0
            }
            let sender = RelayTable.Binding(address: source, port: sourcePort)
            // Sent on unchanged: the receiving node reads the inner packet as it was sent,
            // in the family the target reaches the relay by. Nodes leave room for an IPv6
            // header (``EncapPath/relayedRoom(to:)``); one still too large for the path
            // on goes in fragments rather than not at all.
            if let target = encap.relay?.route(datagram, from: sender, now: MonotonicClock.milliseconds()),
               !encap.send(base, length: length, to: target.address, port: target.port),
               errno != EMSGSIZE || !encap.sendFragmentable(base, length: length, to: target.address, port: target.port) {
                encap.counters.sendFailures &+= 1
            }
        }
        return 0
    }

    /// A relayed signal (``RelayedSignal``): a relay routes it as a relayed packet and
    /// stamps the sender's address into it; a node takes it only as
    /// ``RelayedSignalCheck`` says (from its own relay, stamped by it), and hands it to the
    /// signaling, which checks it as a message from that origin (docs/signaling.md,
    /// "Signaling through the relay").
    private func receiveRelayedSignal(_ encap: EncapPath, at base: UnsafeMutableRawPointer, length: Int,
                                      source: IPAddress, sourcePort: UInt16) {
        let datagram = UnsafeMutableRawBufferPointer(start: base, count: length)
        if encap.relay != nil {
            let sender = RelayTable.Binding(address: source, port: sourcePort)
            if let target = encap.relay?.routeSignal(datagram, from: sender, now: MonotonicClock.milliseconds()),
               !encap.send(base, length: length, to: target.address, port: target.port) {
                encap.counters.sendFailures &+= 1
            }
            return
        }
        let now = MonotonicClock.milliseconds()
        let sender = RelayTable.Binding(address: source, port: sourcePort)
        guard let origin = encap.relaySecrets.withLock({ secrets in
            RelayedSignalCheck.origin(UnsafeRawBufferPointer(datagram), from: sender, relay: encap.relayServer,
                                      secrets: secrets, now: now)
        }) else {
            encap.counters.relayRefused &+= 1
            encap.counters.refused &+= 1
            // From the relay itself: the secret it stamps with may be one whose answer was
            // lost; a registration now brings it (at most one every 2 s, forged or not).
            if sender == encap.relayServer, encap.relaySecrets.withLock({ $0.refused(now: now) }) {
                encap.counters.relayRecoveries &+= 1
                encap.relayRecoveryHandler()
            }
            return
        }
        encap.counters.relaySignalsReceived &+= 1
        encap.relayedSignalHandler(origin, UnsafeRawBufferPointer(rebasing: datagram[RelayedSignal.signalOffset...]))
    }

    /// Writes the packet the coalescer put together, if any, into the TUN device.
    private func flushCoalesced(_ encap: EncapPath) {
        let segments = encap.coalescer.segments
        let length = encap.coalescer.finish()
        guard length > 0 else { return }
        do {
            try tun.write(UnsafeRawBufferPointer(start: encap.coalescer.buffer, count: length))
            if segments > 1 { encap.counters.segmentsCoalesced &+= UInt64(segments) }
        } catch {
            processor.counters.engineDrops[Int(EngineDropReason.writeFailed.rawValue)] &+= 1
        }
    }

    /// A carried packet goes into the TUN device, as a translated inbound packet would,
    /// when its source HoA's peer sends from the datagram's address and it is for this
    /// node's HoA; anything else is refused (a spoofed datagram cannot inject traffic
    /// from a HoA whose peer is elsewhere).
    private func deliverEncapsulated(_ encap: EncapPath, at base: UnsafeMutableRawPointer, length: Int,
                                     source: IPAddress, sourcePort: UInt16) -> Bool {
        let start = base + EncapWire.headerLength
        let packet = start + VirtioNetHeader.size
        let packetLength = length - EncapWire.headerLength - VirtioNetHeader.size
        guard processor.carriedPeerMoA(UnsafeRawPointer(packet), length: packetLength) == source else {
            encap.counters.refused &+= 1
            return false
        }
        // A first contact's MoA delivers nothing as the peer's before its probe is answered.
        guard processor.admitsCarried(from: source, length: packetLength) else { return false }
        // Only keepalives make a peer's traffic go back in UDP: they come from the side that
        // decided to encapsulate, as long as it does. Packets keep a known entry fresh and
        // follow a port the NAT changed; learning from them too would have two peers keep
        // each other in UDP after the deciding one went back to direct.
        if encap.endpoints.port(for: source) != nil {
            encap.endpoints.heard(source, port: sourcePort, now: MonotonicClock.milliseconds())
        }
        return writeCarried(encap, at: base, length: length)
    }

    /// A relayed packet (docs/signaling.md, "Relay") goes into the TUN device as a carried
    /// packet does, with the relay standing for the peer's MoA: only from the relay this
    /// node registers with (its address and `encap-port`), only when its inner source HoA
    /// is a peer whose MoA this node reaches in UDP (only for such peers does the relay
    /// stand in), and only for this node's HoA. Anything else is refused and counted. A
    /// first contact's MoA under check delivers nothing through the relay either
    /// (``PacketProcessor/admitsRelayed(_:length:from:port:relay:endpoints:)``).
    private func deliverRelayed(_ encap: EncapPath, at base: UnsafeMutableRawPointer, length: Int,
                                source: IPAddress, sourcePort: UInt16) -> Bool {
        guard let relay = encap.relayServer else {
            encap.counters.refused &+= 1
            return false
        }
        let packet = base + EncapWire.headerLength + VirtioNetHeader.size
        let packetLength = length - EncapWire.headerLength - VirtioNetHeader.size
        switch processor.admitsRelayed(UnsafeRawPointer(packet), length: packetLength, from: source,
                                       port: sourcePort, relay: relay, endpoints: encap.endpoints) {
        case .deliver:
            break
        case .unproven:
            return false
        case .refused:
            encap.counters.relayRefused &+= 1
            encap.counters.refused &+= 1
            return false
        }
        guard writeCarried(encap, at: base, length: length) else { return false }
        encap.counters.relayPacketsReceived &+= 1
        return true
    }

    /// Writes the carried packet of the datagram at `base` (checked) into the TUN device,
    /// or joins it to the packet being put together for it.
    private func writeCarried(_ encap: EncapPath, at base: UnsafeMutableRawPointer, length: Int) -> Bool {
        let start = base + EncapWire.headerLength
        let packet = start + VirtioNetHeader.size
        let packetLength = length - EncapWire.headerLength - VirtioNetHeader.size
        // The peer's data, as a translated packet is: idle probing counts it (ReceiveMarks).
        processor.inboundPeers.mark(translated: UnsafeRawPointer(packet))
        // A plain packet (a segment cut by the peer) may join the others of its flow.
        let virtio = VirtioNetHeader(loadingFrom: UnsafeRawPointer(start))
        if virtio.flags == 0 && virtio.gsoTypeRaw == 0 {
            var joined = encap.coalescer.add(UnsafeRawPointer(packet), count: packetLength)
            if !joined {
                flushCoalesced(encap)
                joined = encap.coalescer.add(UnsafeRawPointer(packet), count: packetLength)
            }
            if joined {
                encap.counters.packetsReceived &+= 1
                processor.counters.inboundPackets &+= 1
                processor.counters.inboundBytes &+= UInt64(packetLength)
                return true
            }
        } else {
            flushCoalesced(encap)
        }
        do {
            try tun.write(UnsafeRawBufferPointer(start: start, count: length - EncapWire.headerLength))
            encap.counters.packetsReceived &+= 1
            processor.counters.inboundPackets &+= 1
            processor.counters.inboundBytes &+= UInt64(packetLength)
            return true
        } catch {
            processor.counters.engineDrops[Int(EngineDropReason.writeFailed.rawValue)] &+= 1
            return false
        }
    }

    private func isPeerMoA(_ address: IPAddress) -> Bool {
        switch address {
        case .v4(let a): processor.table.hoa(forMoA: a) != nil
        case .v6(let a): processor.table.hoa(forMoA: a) != nil
        }
    }
}
