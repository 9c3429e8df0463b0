/// Reads TSIG keys from BIND-style configuration text, the format `tsig-keygen`,
/// `ddns-confgen` and `nsupdate -k` share:
///
///     key "mn1.hoa.mip.test." {
///         algorithm hmac-sha256;
///         secret "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
///     };
///
/// Pure: it takes text, so reading the file (and checking its permissions) stays with
/// the caller. Statements other than `key` are skipped, so a named.conf fragment works.
public enum TSIGKeyFile {
    /// Every key in `text`, in order.
    public static func parse(_ text: String) throws(TSIGKeyError) -> [TSIGKey] {
        var tokens = Tokenizer(Array(text.utf8))
        var keys: [TSIGKey] = []
        while let token = try tokens.next() {
            if case .word(let word) = token.kind, word.lowercased() == "key" {
                keys.append(try parseKey(&tokens, line: token.line))
            } else {
                try skipStatement(&tokens, first: token)
            }
        }
        return keys
    }

    private static func parseKey(_ tokens: inout Tokenizer, line: Int) throws(TSIGKeyError) -> TSIGKey {
        guard let nameToken = try tokens.next(), let nameText = nameToken.text else { throw .syntax(line: line) }
        try expect(&tokens, .open)
        var algorithm: TSIGAlgorithm?
        var secret: String?
        while true {
            guard let token = try tokens.next() else { throw .syntax(line: line) }
            if token.kind == .close { break }
            guard case .word(let field) = token.kind, let value = try tokens.next(), let valueText = value.text else {
                throw .syntax(line: token.line)
            }
            switch field.lowercased() {
            case "algorithm":
                guard let a = TSIGAlgorithm(keyword: valueText) else { throw .unknownAlgorithm(valueText) }
                algorithm = a
            case "secret":
                secret = valueText
            default:
                throw .syntax(line: token.line)
            }
            try expect(&tokens, .semicolon)
        }
        try expect(&tokens, .semicolon)
        guard let algorithm, let secret else { throw .incompleteKey(nameText) }
        let name: DNSName
        do { name = try DNSName(nameText) } catch { throw .badName(nameText) }
        return try TSIGKey(name: name, algorithm: algorithm, base64Secret: secret)
    }

    /// Skips one statement of another kind: up to its `;` at brace depth zero.
    private static func skipStatement(_ tokens: inout Tokenizer, first: Token) throws(TSIGKeyError) {
        var depth = 0
        var token: Token? = first
        while let t = token {
            switch t.kind {
            case .open: depth += 1
            case .close:
                depth -= 1
                guard depth >= 0 else { throw .syntax(line: t.line) }
            case .semicolon where depth == 0: return
            default: break
            }
            token = try tokens.next()
        }
        throw .syntax(line: first.line)
    }

    private static func expect(_ tokens: inout Tokenizer, _ kind: Token.Kind) throws(TSIGKeyError) {
        guard let token = try tokens.next() else { throw .syntax(line: tokens.line) }
        guard token.kind == kind else { throw .syntax(line: token.line) }
    }

    private struct Token {
        enum Kind: Equatable {
            case word(String), quoted(String), open, close, semicolon
        }
        var kind: Kind
        var line: Int
        var text: String? {
            switch kind {
            case .word(let s), .quoted(let s): s
            default: nil
            }
        }
    }

    private struct Tokenizer {
        let bytes: [UInt8]
        var index = 0
        var line = 1

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        mutating func next() throws(TSIGKeyError) -> Token? {
            skipSpaceAndComments()
            guard index < bytes.count else { return nil }
            let c = bytes[index]
            switch c {
            case UInt8(ascii: "{"): index += 1; return Token(kind: .open, line: line)
            case UInt8(ascii: "}"): index += 1; return Token(kind: .close, line: line)
            case UInt8(ascii: ";"): index += 1; return Token(kind: .semicolon, line: line)
            case UInt8(ascii: "\""):
                let startLine = line
                index += 1
                let start = index
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    if bytes[index] == UInt8(ascii: "\n") { line += 1 }
                    index += 1
                }
                guard index < bytes.count else { throw .syntax(line: startLine) }
                defer { index += 1 }
                return Token(kind: .quoted(String(decoding: bytes[start..<index], as: UTF8.self)), line: startLine)
            default:
                let start = index
                while index < bytes.count, !Self.isDelimiter(bytes[index]) { index += 1 }
                return Token(kind: .word(String(decoding: bytes[start..<index], as: UTF8.self)), line: line)
            }
        }

        private static func isDelimiter(_ c: UInt8) -> Bool {
            c <= 0x20 || c == UInt8(ascii: "{") || c == UInt8(ascii: "}") || c == UInt8(ascii: ";")
                || c == UInt8(ascii: "\"") || c == UInt8(ascii: "#")
        }

        private mutating func skipSpaceAndComments() {
            while index < bytes.count {
                let c = bytes[index]
                let next = index + 1 < bytes.count ? bytes[index + 1] : 0
                if c == UInt8(ascii: "\n") {
                    line += 1
                    index += 1
                } else if c <= 0x20 {
                    index += 1
                } else if c == UInt8(ascii: "#") || (c == UInt8(ascii: "/") && next == UInt8(ascii: "/")) {
                    while index < bytes.count, bytes[index] != UInt8(ascii: "\n") { index += 1 }
                } else if c == UInt8(ascii: "/") && next == UInt8(ascii: "*") {
                    index += 2
                    while index < bytes.count,
                          !(bytes[index] == UInt8(ascii: "*") && index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "/")) {
                        if bytes[index] == UInt8(ascii: "\n") { line += 1 }
                        index += 1
                    }
                    index = min(index + 2, bytes.count)
                } else {
                    return
                }
            }
        }
    }
}

/// Standard base64 (RFC 4648 §4), kept here so the module needs nothing beyond Crypto.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }()

    /// Decodes, ignoring whitespace; padding is optional but nothing may follow it.
    static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        var padding = 0
        for c in text.utf8 {
            if c == UInt8(ascii: " ") || c == UInt8(ascii: "\n") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r") {
                continue
            }
            if c == UInt8(ascii: "=") {
                padding += 1
                guard padding <= 2 else { return nil }
                continue
            }
            let v = values[Int(c)]
            guard v != 0xFF, padding == 0 else { return nil }
            accumulator = accumulator << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        // Leftover bits must be zero padding of a final partial group, never a lone sextet.
        guard bits < 6, accumulator & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return out
    }

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i])
            let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let group = b0 << 16 | b1 << 8 | b2
            out.append(alphabet[Int(group >> 18 & 63)])
            out.append(alphabet[Int(group >> 12 & 63)])
            out.append(i + 1 < bytes.count ? alphabet[Int(group >> 6 & 63)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(group & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
