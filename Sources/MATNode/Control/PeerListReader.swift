/// Reads `matctl peers`' reply as ``PeerListJSON`` writes it, without JSONDecoder, which
/// took most of matctl's time for it at 100,000 peers (docs/benchmarks.md, "Scale").
///
/// Only that exact shape: no whitespace, no escaped string, no member it does not know.
/// Anything else (a reply JSONEncoder wrote, an error) reads as nil and goes to
/// JSONDecoder, so what this accepts JSONDecoder reads the same (PeerListJSONTests).
struct PeerListReader {
    private let bytes: [UInt8]
    private var at = 0

    /// The peers and the version of `line`, or nil when it is not in that shape.
    static func read(_ line: [UInt8]) -> (peers: [PeerReport], version: Int)? {
        var reader = PeerListReader(bytes: line)
        return reader.reply()
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private mutating func reply() -> (peers: [PeerReport], version: Int)? {
        var peers: [PeerReport]?, version: Int?
        guard members({ reader, key in
            switch key {
            case "peers": peers = reader.array { $0.peer() }
            case "version": version = reader.number().flatMap { Int($0) }
            default: return false
            }
            return true
        }), at == bytes.count || (at == bytes.count - 1 && bytes[at] == UInt8(ascii: "\n")),
              let peers, let version else { return nil }
        return (peers, version)
    }

    private mutating func peer() -> PeerReport? {
        var home: String?, moas: [PeerReport.Binding]?, sequence: UInt64?
        var report = PeerReport(homeAddress: "", mobileAddresses: [], preferred: nil, sequence: 0)
        var valid = true
        guard members({ reader, key in
            switch key {
            case "homeAddress": home = reader.string()
            case "mobileAddresses": moas = reader.array { $0.binding() }
            case "sequence": sequence = reader.number().flatMap { UInt64($0) }
            case "preferred": report.preferred = reader.string(); valid = valid && report.preferred != nil
            case "origin": report.origin = reader.string(); valid = valid && report.origin != nil
            case "alert": report.alert = reader.string(); valid = valid && report.alert != nil
            case "path": report.path = reader.string(); valid = valid && report.path != nil
            case "roundTripMilliseconds":
                report.roundTripMilliseconds = reader.number().flatMap { UInt64($0) }
                valid = valid && report.roundTripMilliseconds != nil
            case "lastAckSecondsAgo":
                if reader.literal("null") { return true }
                report.lastAckSecondsAgo = reader.number().flatMap(Self.representable)
                valid = valid && report.lastAckSecondsAgo != nil
            default: return false
            }
            return true
        }), valid, let home, let moas, let sequence else { return nil }
        report.homeAddress = home
        report.mobileAddresses = moas
        report.sequence = sequence
        return report
    }

    private mutating func binding() -> PeerReport.Binding? {
        var address: String?, flags: String?, priority: Int?
        guard members({ reader, key in
            switch key {
            case "address": address = reader.string()
            case "flags": flags = reader.string()
            case "priority": priority = reader.number().flatMap { Int($0) }
            default: return false
            }
            return true
        }), let address, let flags, let priority else { return nil }
        return PeerReport.Binding(address: address, priority: priority, flags: flags)
    }

    /// `{"key":value,...}`, each value read by `member`, which says whether it knew the key.
    private mutating func members(_ member: (inout PeerListReader, String) -> Bool) -> Bool {
        guard take(UInt8(ascii: "{")) else { return false }
        if take(UInt8(ascii: "}")) { return true }
        repeat {
            guard let key = string(), take(UInt8(ascii: ":")), member(&self, key) else { return false }
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "}"))
    }

    /// `[element,...]`; nil when any element is.
    private mutating func array<T>(_ element: (inout PeerListReader) -> T?) -> [T]? {
        guard take(UInt8(ascii: "[")) else { return nil }
        var result: [T] = []
        if take(UInt8(ascii: "]")) { return result }
        repeat {
            guard let value = element(&self) else { return nil }
            result.append(value)
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "]")) ? result : nil
    }

    /// A string with no escape and no control character, valid UTF-8.
    private mutating func string() -> String? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = at
        while at < bytes.count, bytes[at] != UInt8(ascii: "\"") {
            guard bytes[at] >= 0x20, bytes[at] != UInt8(ascii: "\\") else { return nil }
            at += 1
        }
        guard at < bytes.count else { return nil }
        defer { at += 1 }
        return String(validating: bytes[start..<at], as: UTF8.self)
    }

    /// A number's text, checked against JSON's grammar: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    /// `text` as a Double when JSONDecoder would take it: finite, and not a non-zero
    /// number too small for a Double (JSONDecoder refuses both; `Double(_:)` gives
    /// infinity or zero).
    static func representable(_ text: Substring) -> Double? {
        guard let value = Double(text), value.isFinite else { return nil }
        if value == 0, text.prefix(while: { $0 != "e" && $0 != "E" }).contains(where: { ("1"..."9").contains($0) }) {
            return nil
        }
        return value
    }

    private mutating func number() -> Substring? {
        let start = at
        _ = take(UInt8(ascii: "-"))
        // A leading zero stands alone ("05" stops after the 0 and fails where it is).
        if !take(UInt8(ascii: "0")), digits() == 0 { return nil }
        if take(UInt8(ascii: ".")), digits() == 0 { return nil }
        if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
            if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
            if digits() == 0 { return nil }
        }
        return Substring(String(decoding: bytes[start..<at], as: UTF8.self))
    }

    private mutating func digits() -> Int {
        let start = at
        while at < bytes.count, bytes[at] >= UInt8(ascii: "0"), bytes[at] <= UInt8(ascii: "9") { at += 1 }
        return at - start
    }

    private mutating func literal(_ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard at + count <= bytes.count else { return false }
        let matches = text.withUTF8Buffer { Array($0) == Array(bytes[at..<(at + count)]) }
        if matches { at += count }
        return matches
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard at < bytes.count, bytes[at] == byte else { return false }
        at += 1
        return true
    }
}
