/// `matctl peers`' reply written as JSON by hand: the same keys and values that
/// `JSONEncoder.control` writes (sorted keys, absent optionals left out), which
/// `JSONDecoder` reads back as the same ``ControlReply``.
///
/// With 100,000 peers JSONEncoder took about 40% of the control worker's time for the
/// reply (it boxes every value and key); this appends the bytes to one buffer
/// (docs/benchmarks.md, "Scale").
enum PeerListJSON {
    /// `{"peers":[...],"version":V}` and a newline.
    static func line(_ peers: [PeerReport], version: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + peers.count * 200)
        out += #"{"peers":["#.utf8
        for (index, peer) in peers.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            write(peer, into: &out)
        }
        out += #"],"version":"#.utf8
        out += String(version).utf8
        out += "}\n".utf8
        return out
    }

    /// One peer, its keys in sorted order.
    private static func write(_ peer: PeerReport, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        if let alert = peer.alert { string("alert", alert, &first, &out) }
        string("homeAddress", peer.homeAddress, &first, &out)
        if let ago = peer.lastAckSecondsAgo {
            key("lastAckSecondsAgo", &first, &out)
            // A finite number as Swift prints it (JSON's syntax); anything else as null,
            // which reads back as absent.
            out += (ago.isFinite ? "\(ago)" : "null").utf8
        }
        key("mobileAddresses", &first, &out)
        out.append(UInt8(ascii: "["))
        for (index, binding) in peer.mobileAddresses.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "{"))
            var firstOfBinding = true
            string("address", binding.address, &firstOfBinding, &out)
            string("flags", binding.flags, &firstOfBinding, &out)
            key("priority", &firstOfBinding, &out)
            out += String(binding.priority).utf8
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
        if let origin = peer.origin { string("origin", origin, &first, &out) }
        if let path = peer.path { string("path", path, &first, &out) }
        if let preferred = peer.preferred { string("preferred", preferred, &first, &out) }
        if let rtt = peer.roundTripMilliseconds {
            key("roundTripMilliseconds", &first, &out)
            out += String(rtt).utf8
        }
        key("sequence", &first, &out)
        out += String(peer.sequence).utf8
        out.append(UInt8(ascii: "}"))
    }

    /// `"name":`, after a comma unless it is the object's `first` member.
    private static func key(_ name: StaticString, _ first: inout Bool, _ out: inout [UInt8]) {
        if !first { out.append(UInt8(ascii: ",")) }
        first = false
        out.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { out += $0 }
        out += #"":"#.utf8
    }

    private static func string(_ name: StaticString, _ value: String, _ first: inout Bool, _ out: inout [UInt8]) {
        key(name, &first, &out)
        string(value, into: &out)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// `text` as a JSON string: quotes, backslashes and control characters escaped.
    static func string(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += #"\""#.utf8
            case UInt8(ascii: "\\"): out += #"\\"#.utf8
            case 0x0a: out += #"\n"#.utf8
            case 0x0d: out += #"\r"#.utf8
            case 0x09: out += #"\t"#.utf8
            case ..<0x20:
                out += #"\u00"#.utf8
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xf)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
