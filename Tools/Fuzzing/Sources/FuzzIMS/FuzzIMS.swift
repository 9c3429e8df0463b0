// libFuzzer target over MATIMSCore: the whole request handler of mat-ims (`IMSCore`, as the
// UDP and TCP listeners drive it), on a fresh `IMSCore.fuzzingInstance()` per input, so
// every input reproduces. Like the other targets it has no `main` of its own.
//
// Input: a program of messages, each `control (1 byte) | length (2, big-endian) | bytes`
// (the last one takes what is left if the length runs past the end). Control bits:
//   0-1  sign the bytes before handing them over: 0 no, 1 with the node key, 2 with the
//        admin key, 3 with a key the server does not know (the node key's name)
//   2    over TCP (`handleStream`), else UDP (`handleDatagram`)
//   3-4  source: none, 127.0.0.1, 192.0.2.x (x from the control byte), 2001:db8::1
//   5-6  signing time: the server's clock +0, +1, -2 or +400 s (outside the fudge)
// The zone carries over from message to message, so updates build on each other.
//
// Invariants (a violation traps, so libFuzzer saves the input):
// - nothing traps or reads out of bounds; every datagram ends in a reply or a counted
//   drop (`malformed-dropped`, `rrl-dropped`), every TCP message in replies or a counted
//   drop;
// - every reply is a response (QR) with the request's ID; a UDP reply to a parseable,
//   unsigned request fits its size limit (512, or the EDNS size up to `max-udp-size`);
// - a signed reply to a request signed with a key the server knows verifies against the
//   request's MAC, and each further message of a transfer against the one before;
// - only an update signed with a known key changes the zone; one signed with the node key
//   changes only the node's own name (types A, AAAA, TXT) and PTRs to that name below
//   `moa.`, and never grows a name or the key past `IMSCore.fuzzingLimits`;
// - the zone's PTR index (`ptrCount(to:)`) matches a recount;
// - at the end, an AXFR gives exactly the zone's records, between two copies of its SOA.

import MATDNS
import MATIMSCore
import MATPacket

let zoneName = try! DNSName("mat.example.")
let moaSuffix = try! DNSName("moa.mat.example.")
let nodeName = IMSCore.fuzzingNodeKey.name
let strangerKey = TSIGKey(name: nodeName, secret: Array(repeating: 0x99, count: 32))
let signingKeys: [TSIGKey?] = [nil, IMSCore.fuzzingNodeKey, IMSCore.fuzzingAdminKey, strangerKey]
let timeOffsets: [Int64] = [0, 1, -2, 400]
let maxUDPSize = IMSConfiguration().maxUDPSize

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIMS(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let core = IMSCore.fuzzingInstance()
    var offset = 0
    while offset + 3 <= input.count {
        let control = input[offset]
        let length = min(Int(input[offset + 1]) << 8 | Int(input[offset + 2]), input.count - offset - 3)
        let message = Array(input[(offset + 3)..<(offset + 3 + length)])
        offset += 3 + length
        step(core, control: control, message: message)
    }
    checkTransfer(core)
    return 0
}

func step(_ core: IMSCore, control: UInt8, message: [UInt8]) {
    let signing = Int(control & 3)
    let key = signingKeys[signing]
    /// Signed with the node or the admin key, which the server knows.
    let knownSigner = signing == 1 || signing == 2
    let tcp = control & 4 != 0
    let source: IPEndpoint? = switch (control >> 3) & 3 {
    case 0: nil
    case 1: IPEndpoint("127.0.0.1:5353", defaultPort: 53)
    case 2: IPEndpoint(address: .v4(IPv4Address(0xC000_0200 | UInt32(control))), port: 5353)
    default: IPEndpoint("[2001:db8::1]:5353", defaultPort: 53)
    }
    let time = UInt64(Int64(IMSCore.fuzzingTime) + timeOffsets[Int(control >> 5) & 3])
    var request = message
    var requestMAC: [UInt8]? = nil
    if let key {
        // Too short or too long to sign: sent as it is.
        if let signed = try? TSIG.sign(message, key: key, now: time) {
            request = signed.bytes
            requestMAC = signed.mac
        }
    }

    let countersBefore = core.counters
    let zoneBefore = core.zone(zoneName)!
    let replies: [[UInt8]] = tcp
        ? core.handleStream(request, from: source)
        : (core.handleDatagram(request, from: source).map { [$0] } ?? [])
    let counters = core.counters
    let zoneAfter = core.zone(zoneName)!

    if replies.isEmpty {
        let dropped = counters[.malformedDropped] > countersBefore[.malformedDropped]
            || (!tcp && counters[.rrlDropped] > countersBefore[.rrlDropped])
        check(dropped, "no reply and no counted drop (tcp: \(tcp))")
    }
    for reply in replies {
        check(reply.count >= 12 && reply[2] & 0x80 != 0, "a reply that is not a response")
        check(request.count >= 2 && reply[0] == request[0] && reply[1] == request[1], "a reply with another ID")
    }
    if !tcp, requestMAC == nil, let reply = replies.first, let parsed = try? DNSMessage(bytes: request), parsed.tsig == nil {
        let limit = parsed.edns.map { max(512, min(Int($0.udpPayloadSize), maxUDPSize)) } ?? 512
        check(reply.count <= limit, "UDP reply of \(reply.count) bytes, limit \(limit)")
    }
    if let key, let requestMAC, knownSigner {
        checkSignatures(replies, key: key, requestMAC: requestMAC)
    }

    let changed = zoneBefore.serial != zoneAfter.serial || zoneBefore.nodes != zoneAfter.nodes
    if changed {
        check(knownSigner && requestMAC != nil, "the zone changed without a known signer")
        if signing == 1 { checkNodeChange(before: zoneBefore, after: zoneAfter) }
    }
    checkPTRIndex(zoneAfter)
}

/// Signed replies verify: the first against the request's MAC, each later one (a transfer
/// over TCP) against the one before. Unsigned replies (BADKEY, BADSIG) are allowed.
func checkSignatures(_ replies: [[UInt8]], key: TSIGKey, requestMAC: [UInt8]) {
    var prior = requestMAC
    for (index, reply) in replies.enumerated() {
        guard let parsed = try? DNSMessage(bytes: reply), let tsig = parsed.tsig, !tsig.data.mac.isEmpty else { return }
        // At the reply's own time: a BADTIME reply carries the request's time (RFC 8945 §5.2.3).
        let now = tsig.data.timeSigned
        let outcome = index == 0
            ? TSIG.verifyResponse(reply, key: key, requestMAC: prior, now: now)
            : TSIG.verifySubsequentResponse(reply, key: key, priorMAC: prior, now: now)
        guard case .verified(let context) = outcome else {
            fail("signed reply \(index) does not verify: \(outcome)")
        }
        prior = context.data.mac
    }
}

/// What a node key changed is its own: its name (A, AAAA, TXT) and its PTRs under `moa.`;
/// and no name or the key grew past the limits.
func checkNodeChange(before: ZoneStore, after: ZoneStore) {
    let limits = IMSCore.fuzzingLimits
    let names = Set(before.nodes.keys).union(after.nodes.keys)
    for name in names {
        let old = before.nodes[name] ?? []
        let new = after.nodes[name] ?? []
        guard Set(old) != Set(new) else { continue }
        if name == nodeName {
            // The RRsets that changed (an admin may have put other types there before).
            let types = Set(Set(old).symmetricDifference(Set(new)).map(\.type))
            check(types.isSubset(of: [.a, .aaaa, .txt]), "node changed types \(types) at its name")
        } else if name == zoneName {
            // Only the SOA serial moves at the apex.
            check(old.filter { $0.type != .soa } == new.filter { $0.type != .soa }, "node changed the apex")
        } else {
            check(name.isSubdomain(of: moaSuffix) && name != moaSuffix, "node changed \(name)")
            let oldRecords = Set(old.flatMap { set in set.records.map { RecordKey(type: set.type, data: $0) } })
            let newRecords = Set(new.flatMap { set in set.records.map { RecordKey(type: set.type, data: $0) } })
            for record in oldRecords.symmetricDifference(newRecords) {
                check(record.data == .ptr(nodeName), "node changed \(record.data) at \(name)")
            }
        }
        let count = new.reduce(0) { $0 + $1.records.count }
        if count > old.reduce(0, { $0 + $1.records.count }) {
            check(count <= limits.recordsPerName, "\(name) grew to \(count) records")
        }
        let addresses = new.filter { $0.type == .a || $0.type == .aaaa }.reduce(0) { $0 + $1.records.count }
        if addresses > old.filter({ $0.type == .a || $0.type == .aaaa }).reduce(0, { $0 + $1.records.count }) {
            check(addresses <= limits.addressesPerName, "\(name) grew to \(addresses) addresses")
        }
    }
    let owned = after.ptrCount(to: nodeName)
    if owned > before.ptrCount(to: nodeName) {
        check(1 + owned <= limits.namesPerKey, "the node key grew to \(1 + owned) names")
    }
}

struct RecordKey: Hashable {
    var type: DNSType
    var data: DNSRecordData
}

/// `ptrCount(to:)` against a count of the PTR records in the zone.
func checkPTRIndex(_ zone: ZoneStore) {
    var counts: [DNSName: Int] = [:]
    for (_, sets) in zone.nodes {
        for set in sets where set.type == .ptr {
            for case .ptr(let target) in set.records { counts[target, default: 0] += 1 }
        }
    }
    for (target, count) in counts {
        check(zone.ptrCount(to: target) == count, "ptrCount(to: \(target)) is \(zone.ptrCount(to: target)), not \(count)")
    }
    check(counts[nodeName] != nil || zone.ptrCount(to: nodeName) == 0, "ptrCount(to: node) without a PTR")
}

/// An AXFR over TCP returns the zone's records, SOA first and last.
func checkTransfer(_ core: IMSCore) {
    let zone = core.zone(zoneName)!
    let query = try! DNSMessage(header: DNSHeader(id: 0xAF), questions: [DNSQuestion(name: zoneName, type: .axfr)]).encode()
    var records: [DNSResourceRecord] = []
    for reply in core.handleStream(query) {
        guard let message = try? DNSMessage(bytes: reply) else { fail("an AXFR message does not parse") }
        records += message.answers
    }
    check(records.count >= 2 && records.first == zone.soaRecord && records.last == zone.soaRecord,
          "AXFR does not start and end with the SOA")
    let body = records.dropFirst().dropLast()
    let expected = zone.allRecords().dropFirst()
    check(body.count == expected.count && Set(body) == Set(expected), "AXFR records differ from the zone")
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fail(message()) }
}

func fail(_ message: String) -> Never {
    fatalError("FuzzIMS invariant violated: \(message)")
}
