import MATWire

/// A bounds-checked cursor over a whole DNS message: the integer reads are MATWire's,
/// names (with compression) are read here.
///
/// It keeps the whole message (not just the current field) because compression pointers
/// may point anywhere before the name being read. Every read checks against `limit`, so no
/// malformed input can read past the end; the unchecked buffer subscripts are only ever used
/// after such a check.
struct WireReader: ByteReading {
    let buffer: UnsafeBufferPointer<UInt8>
    var position: Int
    /// Reads in the current field may not pass this (the RDATA end while decoding RDATA).
    var limit: Int

    init(_ buffer: UnsafeBufferPointer<UInt8>, position: Int = 0) {
        self.buffer = buffer
        self.position = position
        self.limit = buffer.count
    }

    static func shortInput(at offset: Int) -> DNSParseError { .truncated(offset: offset) }

    /// A name can need at most 127 jumps (each label at least two octets of a 255-octet
    /// name); anything beyond is hostile, even though backward-only pointers already
    /// guarantee termination.
    static let maxJumps = 127

    /// Reads a possibly compressed name and returns it uncompressed.
    ///
    /// Loop protection: every pointer must point strictly before the start of the label
    /// run it was found in, so jump targets strictly decrease and reading always ends.
    mutating func name() throws(DNSParseError) -> DNSName {
        var wire: [UInt8] = []
        wire.reserveCapacity(32)
        var cursor = position
        var segmentStart = position
        var end = limit
        var jumped = false
        var jumps = 0
        while true {
            guard cursor < end else { throw .truncated(offset: cursor) }
            let length = Int(buffer[cursor])
            switch length {
            case 0:
                wire.append(0)
                if !jumped { position = cursor + 1 }
                return DNSName(uncheckedWire: wire)
            case 1...63:
                guard length < end - cursor else { throw .truncated(offset: cursor) }
                guard wire.count + length + 2 <= DNSName.maxWireLength else {
                    throw .nameTooLong(offset: cursor)
                }
                wire.append(contentsOf: buffer[cursor...cursor + length])
                cursor += length + 1
            case 0xC0...0xFF:
                guard cursor + 1 < end else { throw .truncated(offset: cursor) }
                let target = (length & 0x3F) << 8 | Int(buffer[cursor + 1])
                // Nothing legitimate lives in the 12-byte header.
                guard target >= 12, target < segmentStart else { throw .badPointer(offset: cursor) }
                jumps += 1
                guard jumps <= Self.maxJumps else { throw .tooManyPointers(offset: cursor) }
                if !jumped {
                    position = cursor + 2
                    jumped = true
                    // The pointed-to labels lie outside the current field (RDATA), so
                    // only the message end bounds them.
                    end = buffer.count
                }
                cursor = target
                segmentStart = target
            default:
                throw .labelTooLong(offset: cursor)
            }
        }
    }

    /// Steps over a name without building it, for scans that only need record offsets.
    /// Pointers are not followed, so their targets are checked when the name is read.
    mutating func skipName() throws(DNSParseError) {
        var cursor = position
        while true {
            guard cursor < limit else { throw .truncated(offset: cursor) }
            let length = Int(buffer[cursor])
            switch length {
            case 0:
                position = cursor + 1
                return
            case 1...63:
                cursor += length + 1
            case 0xC0...0xFF:
                guard cursor + 1 < limit else { throw .truncated(offset: cursor) }
                position = cursor + 2
                return
            default:
                throw .labelTooLong(offset: cursor)
            }
        }
    }
}

/// An append-only message builder that remembers where names were written, so later
/// names can point back at them (RFC 1035 §4.1.4). The integer writes are MATWire's.
struct WireWriter: ByteWriting {
    var bytes: [UInt8] = []
    /// Lower-cased uncompressed suffix -> offset of its first occurrence. Nil when the
    /// caller asked for no compression.
    private var suffixes: [[UInt8]: Int]?

    init(compress: Bool, capacity: Int = 512) {
        bytes.reserveCapacity(capacity)
        suffixes = compress ? [:] : nil
    }

    /// Writes a name, compressed against earlier names when `compress` is true and the
    /// writer was created with compression. Offsets past 0x3FFF cannot be pointer targets
    /// and are simply not remembered.
    mutating func name(_ name: DNSName, compress: Bool) {
        let wire = name.wire
        guard compress, suffixes != nil else {
            bytes.append(contentsOf: wire)
            return
        }
        let base = bytes.count
        var i = 0
        while wire[i] != 0 {
            let key = lowercased(wire[i...])
            if let target = suffixes![key] {
                bytes.append(contentsOf: wire[0..<i])
                u16(0xC000 | UInt16(target))
                return
            }
            if base + i <= 0x3FFF { suffixes![key] = base + i }
            i += Int(wire[i]) + 1
        }
        bytes.append(contentsOf: wire)
    }

    private func lowercased(_ slice: ArraySlice<UInt8>) -> [UInt8] {
        slice.map(asciiLower)
    }
}

@inline(__always)
func asciiLower(_ b: UInt8) -> UInt8 {
    (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
}
