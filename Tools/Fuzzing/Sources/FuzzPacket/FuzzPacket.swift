// libFuzzer target over MATPacket: `PacketLayout.parse`, `Translator.translate` and
// `InternetChecksum.sum`. Built with `-parse-as-library`, so this module has no `main`:
// the libFuzzer runtime provides it and calls `LLVMFuzzerTestOneInput` once per input.
//
// Input format (docs/fuzzing.md has the same table):
//
//   byte 0        flags (see `Flags`)
//   bytes 1-2     partial-checksum `start`, big-endian, signed
//   bytes 3-4     partial-checksum `offset`, big-endian, signed
//   bytes 5-20    address A (IPv4 rewrites use its first 4 bytes)
//   bytes 21-36   address B
//   bytes 37...   the IP packet
//
// The outer rewrite is (source: A, destination: B) and the quote rewrite (source: B,
// destination: A), which is what an inbound ICMP error looks like to MAT: its quote is the
// packet we sent, so addresses sit the other way round. Inputs shorter than the control
// block are parsed whole as a packet.
//
// Any invariant violation calls `fail`, which prints what broke and traps, so libFuzzer
// records the input as a crash.

import MATPacket

/// Bytes in front of the packet that steer the harness.
let controlLength = 37

struct Flags: OptionSet {
    let rawValue: UInt8
    /// Rewrite the outer source to A.
    static let rewriteSource = Flags(rawValue: 1 << 0)
    /// Rewrite the outer destination to B.
    static let rewriteDestination = Flags(rawValue: 1 << 1)
    /// Rewrite the quoted packet's source to B.
    static let quoteSource = Flags(rawValue: 1 << 2)
    /// Rewrite the quoted packet's destination to A.
    static let quoteDestination = Flags(rawValue: 1 << 3)
    /// Use `ChecksumMode.partial` instead of `.complete`.
    static let partial = Flags(rawValue: 1 << 4)
    /// Partial mode: put the partial field where a kernel would (the packet's transport
    /// checksum) instead of at the raw start/offset from bytes 1-4.
    static let partialAtTransport = Flags(rawValue: 1 << 5)
    /// Start the packet at an odd address (as after a 10-byte virtio header). Reads past
    /// the end are still caught; a read just before the start is caught only in the
    /// aligned case, where the packet starts at its allocation.
    static let misaligned = Flags(rawValue: 1 << 6)
    /// Go through the buffer convenience `Translator.translate(_:rewrite:...)`.
    static let bufferAPI = Flags(rawValue: 1 << 7)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPacket(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    Stats.registerOnce()
    let input = UnsafeRawBufferPointer(start: data, count: size)
    checkChecksumSum(input)
    if size < controlLength {
        Stats.shortInputs += 1
        let packet = ExactBuffer(copying: input, misaligned: false)
        defer { packet.free() }
        _ = parseCounted(packet.buffer)
        return 0
    }
    let harness = PacketHarness(input)
    harness.run()
    return 0
}

// MARK: - The harness

struct PacketHarness {
    let flags: Flags
    let partialStart: Int
    let partialOffset: Int
    let addressA: [UInt8]
    let addressB: [UInt8]
    let original: UnsafeRawBufferPointer

    init(_ input: UnsafeRawBufferPointer) {
        flags = Flags(rawValue: input[0])
        partialStart = Int(Int16(bitPattern: UInt16(input[1]) << 8 | UInt16(input[2])))
        partialOffset = Int(Int16(bitPattern: UInt16(input[3]) << 8 | UInt16(input[4])))
        addressA = Array(input[5..<21])
        addressB = Array(input[21..<37])
        original = UnsafeRawBufferPointer(rebasing: input[controlLength...])
    }

    func run() {
        let packet = ExactBuffer(copying: original, misaligned: flags.contains(.misaligned))
        defer { packet.free() }
        guard let layout = parseCounted(packet.buffer) else { return }
        Stats.parsed += 1
        checkLayout(layout, packet.buffer)
        switch layout.family {
        case .ipv4:
            translateAndCheck(packet, layout: layout, as: IPv4Address.self)
            expectFamilyMismatch(packet, layout: layout, wrong: IPv6Address.self)
        case .ipv6:
            translateAndCheck(packet, layout: layout, as: IPv6Address.self)
            expectFamilyMismatch(packet, layout: layout, wrong: IPv4Address.self)
        }
    }

    /// Structural facts every accepted layout must satisfy, and facts about how parsing
    /// depends on the bytes.
    func checkLayout(_ layout: PacketLayout, _ packet: UnsafeMutableRawBufferPointer) {
        let length = layout.packetLength
        let minimum = layout.family == .ipv4 ? 20 : 40
        check(length >= minimum && length <= packet.count, "packetLength \(length) outside \(minimum)...\(packet.count)", layout)
        if let transport = layout.transportOffset {
            check(transport >= minimum && transport + minimumHeader(layout.transportProtocol) <= length,
                  "transport header \(transport) + \(minimumHeader(layout.transportProtocol)) past packetLength \(length)", layout)
        }
        if let quote = layout.quote {
            guard let transport = layout.transportOffset else { fail("quote without a transport header", layout) }
            check(quote.offset == transport + 8, "quote at \(quote.offset), ICMP header at \(transport)", layout)
            check(quote.offset + quote.length == length, "quote \(quote.offset)+\(quote.length) does not end at \(length)", layout)
            check(quote.length >= minimum, "quote shorter than an IP header", layout)
            if let field = quote.transportChecksumOffset {
                check(field >= quote.offset + minimum && field + 2 <= length, "quote checksum field \(field) out of range", layout)
            }
        }
        // Parsing reads nothing past packetLength: the same bytes cut to exactly that length
        // (in a fresh allocation, so ASan sees any read past it) give the same layout.
        let exact = ExactBuffer(copying: UnsafeRawBufferPointer(rebasing: packet[..<length]), misaligned: false)
        defer { exact.free() }
        guard let again = try? PacketLayout.parse(UnsafeRawPointer(exact.base), length: length) else {
            fail("parse fails when cut to its own packetLength \(length)", layout)
        }
        check(again == layout, "parse differs when cut to packetLength: \(again)", layout)
        // And any shorter cut is refused.
        do {
            _ = try PacketLayout.parse(UnsafeRawPointer(exact.base), length: length - 1)
            fail("packet cut one byte short of packetLength still parses", layout)
        } catch {
            // Refused, as it must be.
        }
    }

    /// A rewrite of the other family is refused before any byte changes.
    func expectFamilyMismatch<Wrong: PacketAddress & FuzzAddress>(
        _ packet: ExactBuffer, layout: PacketLayout, wrong: Wrong.Type
    ) {
        let before = Array(packet.buffer)
        let rewrite = AddressRewrite<Wrong>(source: Wrong(fuzzBytes: addressA), destination: Wrong(fuzzBytes: addressB))
        do {
            try Translator.translate(packet.base, layout: layout, rewrite: rewrite, quoteRewrite: rewrite)
            fail("rewrite of the wrong family accepted", layout)
        } catch {
            check(error == .addressFamilyMismatch, "wrong family refused as \(error)", layout)
            Stats.count(error)
        }
        check(Array(packet.buffer) == before, "refused rewrite changed bytes", layout)
    }

    func translateAndCheck<Address: PacketAddress & FuzzAddress>(
        _ packet: ExactBuffer, layout: PacketLayout, as: Address.Type
    ) {
        let a = Address(fuzzBytes: addressA)
        let b = Address(fuzzBytes: addressB)
        let rewrite = AddressRewrite<Address>(
            source: flags.contains(.rewriteSource) ? a : nil,
            destination: flags.contains(.rewriteDestination) ? b : nil)
        let quoteRewrite = AddressRewrite<Address>(
            source: flags.contains(.quoteSource) ? b : nil,
            destination: flags.contains(.quoteDestination) ? a : nil)

        var mode = ChecksumMode.complete
        var partialField: Int? = nil
        if flags.contains(.partial) {
            var start = partialStart, offset = partialOffset
            if flags.contains(.partialAtTransport), let transport = layout.transportOffset,
               let field = checksumFieldOffset(layout.transportProtocol, family: layout.family) {
                start = transport
                offset = field
            }
            mode = .partial(start: start, offset: offset)
            if start >= 0 && offset >= 0 && start + offset + 2 <= layout.packetLength {
                partialField = start + offset
            }
        }

        let before = Array(packet.buffer)
        let originalPacket = UnsafeRawBufferPointer(original)
        let beforeSums = RegionSums(packet.buffer, layout: layout, partialField: partialField)

        // Translate, through the pointer API or the buffer convenience.
        var thrown: DropReason? = nil
        if flags.contains(.bufferAPI) {
            do {
                let returned = try Translator.translate(
                    packet.buffer, rewrite: rewrite, quoteRewrite: quoteRewrite, checksum: mode)
                check(returned == layout, "buffer API returned layout \(returned)", layout)
            } catch {
                thrown = error
            }
        } else {
            do {
                try Translator.translate(
                    packet.base, layout: layout, rewrite: rewrite, quoteRewrite: quoteRewrite, checksum: mode)
            } catch {
                thrown = error
            }
        }

        if flags.contains(.partial) && partialField == nil {
            check(thrown == .badPartialChecksumOffset,
                  "partial location \(mode) outside packetLength \(layout.packetLength) gave \(String(describing: thrown))", layout)
            Stats.count(.badPartialChecksumOffset)
            check(Array(packet.buffer) == before, "refused translation changed bytes", layout)
            return
        }
        if let thrown { fail("translate of a parsed packet threw \(thrown) (mode \(mode))", layout) }
        Stats.translated += 1

        // 1. Only the fields translation owns may change; nothing past packetLength does.
        let fields = ChangeableFields(layout: layout, partialField: partialField)
        for index in 0..<packet.count where packet.buffer[index] != before[index] {
            check(fields.contains(index), "byte \(index) changed (\(hex(before[index])) -> \(hex(packet.buffer[index]))), not a field translation owns", layout)
        }

        // A partial field placed over another field is caller error: check 1 and ASan
        // cover it, the stronger checks below do not apply.
        if let partialField, !partialFieldIsHarmless(partialField, layout: layout, packet: originalPacket) {
            Stats.partialOverlaps += 1
            return
        }

        // 2. Every checksum still sums to what it did (RFC 1624 preserves the one's-complement
        //    sum of what each checksum covers), so a valid checksum stays valid.
        let afterSums = RegionSums(packet.buffer, layout: layout, partialField: partialField)
        beforeSums.checkPreserved(by: afterSums, layout: layout)

        // 3. The translated packet parses to the same layout.
        guard let reparsed = try? PacketLayout.parse(UnsafeRawPointer(packet.base), length: packet.count) else {
            fail("translated packet no longer parses", layout)
        }
        check(reparsed == layout, "translated packet parses differently: \(reparsed)", layout)

        // 4. Translating back with the original addresses restores every byte, except that a
        //    checksum field may come back as the other representation of zero
        //    (0x0000 <-> 0xFFFF), which one's-complement arithmetic cannot tell apart.
        let originalBase = UnsafeRawPointer(original.baseAddress!)
        let back = AddressRewrite<Address>(
            source: rewrite.source == nil ? nil : Address(loadingFrom: originalBase, offset: layout.sourceOffset),
            destination: rewrite.destination == nil ? nil : Address(loadingFrom: originalBase, offset: layout.destinationOffset))
        var quoteBack = AddressRewrite<Address>.unchanged
        if let quote = layout.quote {
            quoteBack.source = quoteRewrite.source == nil ? nil
                : Address(loadingFrom: originalBase, offset: quote.offset + layout.sourceOffset)
            quoteBack.destination = quoteRewrite.destination == nil ? nil
                : Address(loadingFrom: originalBase, offset: quote.offset + layout.destinationOffset)
        }
        do {
            try Translator.translate(packet.base, layout: layout, rewrite: back, quoteRewrite: quoteBack, checksum: mode)
        } catch {
            fail("translating back threw \(error)", layout)
        }
        var index = 0
        while index < packet.count {
            if packet.buffer[index] == before[index] { index += 1; continue }
            guard let field = fields.checksumField(containing: index) else {
                fail("round trip changed byte \(index): \(hex(before[index])) -> \(hex(packet.buffer[index]))", layout)
            }
            let old = UInt16(before[field]) << 8 | UInt16(before[field + 1])
            let new = UInt16(packet.buffer[field]) << 8 | UInt16(packet.buffer[field + 1])
            check((old == 0 && new == 0xFFFF) || (old == 0xFFFF && new == 0),
                  "round trip changed checksum at \(field): \(hex16(old)) -> \(hex16(new))", layout)
            Stats.zeroFlips += 1
            index = field + 2
        }
        Stats.roundTrips += 1
    }

    /// Whether a partial field the caller placed at `field` leaves every other part of the
    /// packet alone: it is the transport checksum itself, or it lies in the payload of a
    /// packet that quotes nothing. Anywhere else (over an address, a length, the TCP data
    /// offset, the ICMP type, a quoted header) the result depends on write order and can
    /// change how the packet parses; the translator only promises bounds for that case.
    func partialFieldIsHarmless(_ field: Int, layout: PacketLayout, packet: UnsafeRawBufferPointer) -> Bool {
        guard let transport = layout.transportOffset else { return false }
        let proto = layout.transportProtocol
        if let checksum = checksumFieldOffset(proto, family: layout.family), field == transport + checksum {
            return true
        }
        guard layout.quote == nil else { return false }
        let headerLength = proto == 6 ? Int(packet[transport + 12] >> 4) * 4 : minimumHeader(proto)
        return field >= transport + headerLength
    }
}

// MARK: - Checksummed regions

/// One's-complement sums, reduced mod 0xFFFF, of everything each checksum of the packet
/// covers (the parts that translation can change, plus the checksum field itself).
struct RegionSums {
    var ipv4Header: UInt32?
    var transport: UInt32?
    /// Set when the transport checksum is a UDP "no checksum" zero: it must stay zero.
    var transportZeroUDP = false
    var quoteHeader: UInt32?
    var quoteTransport: UInt32?
    var quoteZeroUDP = false
    /// The partial field minus the pseudo-header addresses it covers.
    var partial: UInt32?

    init(_ packet: UnsafeMutableRawBufferPointer, layout: PacketLayout, partialField: Int?) {
        let p = UnsafeRawBufferPointer(packet)
        let addressLength = layout.family == .ipv4 ? 4 : 16
        let source = layout.sourceOffset, destination = layout.destinationOffset
        func pseudo(_ base: Int, withDestination: Bool) -> UInt32 {
            var sum = referenceSum(p, base + source ..< base + source + addressLength)
            if withDestination { sum += referenceSum(p, base + destination ..< base + destination + addressLength) }
            return sum
        }
        if layout.family == .ipv4 {
            ipv4Header = referenceSum(p, 0 ..< Int(p[0] & 0x0F) * 4) % 0xFFFF
        }
        let proto = layout.transportProtocol
        if partialField == nil, let transport = layout.transportOffset {
            if let field = checksumFieldOffset(proto, family: layout.family), hasPseudoHeader(proto) {
                if proto == 17 && load16(p, transport + field) == 0 {
                    transportZeroUDP = true
                } else {
                    transport_(pseudo(0, withDestination: layout.pseudoHeaderHasDestination)
                        + referenceSum(p, transport ..< layout.packetLength))
                }
            } else if layout.quote != nil {
                // ICMPv4 error: no pseudo-header.
                transport_(referenceSum(p, transport ..< layout.packetLength))
            }
        }
        if let quote = layout.quote {
            if layout.family == .ipv4 {
                let start = quote.offset
                quoteHeader = referenceSum(p, start ..< start + Int(p[start] & 0x0F) * 4) % 0xFFFF
            }
            if let field = quote.transportChecksumOffset {
                if quote.transportIsUDP && load16(p, field) == 0 {
                    quoteZeroUDP = true
                } else {
                    quoteTransport = (pseudo(quote.offset, withDestination: quote.pseudoHeaderHasDestination)
                        + UInt32(load16(p, field))) % 0xFFFF
                }
            }
        }
        if let partialField {
            // field - pseudo, as a non-negative residue mod 0xFFFF.
            let pseudoSum = pseudo(0, withDestination: layout.pseudoHeaderHasDestination) % 0xFFFF
            partial = (UInt32(load16(p, partialField)) % 0xFFFF + 0xFFFF - pseudoSum) % 0xFFFF
        }
    }

    private mutating func transport_(_ sum: UInt32) { transport = sum % 0xFFFF }

    func checkPreserved(by after: RegionSums, layout: PacketLayout) {
        check(ipv4Header == after.ipv4Header, "IPv4 header sum \(s(ipv4Header)) -> \(s(after.ipv4Header))", layout)
        check(transportZeroUDP == after.transportZeroUDP, "UDP zero checksum not kept zero", layout)
        check(transport == after.transport, "transport checksum region sum \(s(transport)) -> \(s(after.transport))", layout)
        check(quoteHeader == after.quoteHeader, "quoted IPv4 header sum \(s(quoteHeader)) -> \(s(after.quoteHeader))", layout)
        check(quoteZeroUDP == after.quoteZeroUDP, "quoted UDP zero checksum not kept zero", layout)
        check(quoteTransport == after.quoteTransport, "quoted transport checksum sum \(s(quoteTransport)) -> \(s(after.quoteTransport))", layout)
        check(partial == after.partial, "partial checksum minus pseudo-header \(s(partial)) -> \(s(after.partial))", layout)
    }

    private func s(_ value: UInt32?) -> String { value.map { hex16(UInt16($0)) } ?? "none" }
}

/// Byte ranges translation may write: addresses, checksums, the partial field.
struct ChangeableFields {
    /// Address fields and checksum fields other than the partial field, as half-open ranges.
    var owned: [Range<Int>] = []
    /// Offsets of 16-bit checksum fields (the partial field included).
    var checksums: [Int] = []

    init(layout: PacketLayout, partialField: Int?) {
        let addressLength = layout.family == .ipv4 ? 4 : 16
        func addresses(at base: Int) {
            owned.append(base + layout.sourceOffset ..< base + layout.sourceOffset + addressLength)
            owned.append(base + layout.destinationOffset ..< base + layout.destinationOffset + addressLength)
        }
        func checksum(_ offset: Int) {
            owned.append(offset ..< offset + 2)
            checksums.append(offset)
        }
        addresses(at: 0)
        if layout.family == .ipv4 { checksum(10) }
        if partialField == nil, let transport = layout.transportOffset {
            if let field = checksumFieldOffset(layout.transportProtocol, family: layout.family),
               hasPseudoHeader(layout.transportProtocol) || layout.quote != nil {
                checksum(transport + field)
            }
        }
        if let quote = layout.quote {
            addresses(at: quote.offset)
            if layout.family == .ipv4 { checksum(quote.offset + 10) }
            if let field = quote.transportChecksumOffset { checksum(field) }
        }
        if let partialField { checksums.append(partialField) }
    }

    func contains(_ index: Int) -> Bool {
        owned.contains { $0.contains(index) } || checksums.contains { $0 == index || $0 + 1 == index }
    }

    func checksumField(containing index: Int) -> Int? {
        checksums.first { $0 == index || $0 + 1 == index }
    }
}

// MARK: - Checksum function

/// `InternetChecksum.sum` against a byte-at-a-time reference, over the whole input and over
/// an odd-aligned tail, read in place (libFuzzer's copy of the input is exactly `size`
/// bytes long, so ASan sees any read past it).
func checkChecksumSum(_ input: UnsafeRawBufferPointer) {
    guard let base = input.baseAddress else { return }
    for start in [0, 1] where start <= input.count {
        let count = input.count - start
        let fast = InternetChecksum.sum(base + start, count: count)
        let reference = referenceSum(input, start ..< input.count)
        if reference == 0 {
            check(fast == 0, "sum of all-zero bytes is \(hex16(fast))", nil)
        } else {
            // A positive sum folds to 1...0xFFFF, never 0.
            check(fast != 0 && UInt32(fast) % 0xFFFF == reference % 0xFFFF,
                  "InternetChecksum.sum(count: \(count)) = \(hex16(fast)), reference \(reference % 0xFFFF)", nil)
        }
    }
}

/// The plain (unfolded) sum of big-endian 16-bit words over `range`, a lone last byte
/// counting as a high byte. Congruent mod 0xFFFF to the one's-complement sum.
func referenceSum(_ p: UnsafeRawBufferPointer, _ range: Range<Int>) -> UInt32 {
    var sum: UInt32 = 0
    var index = range.lowerBound
    while index < range.upperBound {
        let high = UInt32(p[index]) << 8
        let low = index + 1 < range.upperBound ? UInt32(p[index + 1]) : 0
        sum += high | low
        index += 2
    }
    return sum
}

// MARK: - Protocol facts, written out independently of MATPacket's own tables

/// Offset of the checksum within a transport header the translator may update.
func checksumFieldOffset(_ proto: UInt8, family: AddressFamily) -> Int? {
    switch proto {
    case 6: 16                      // TCP
    case 17, 136, 33: 6             // UDP, UDP-Lite, DCCP
    case 58: 2                      // ICMPv6
    case 1: family == .ipv4 ? 2 : nil  // ICMP (no pseudo-header)
    default: nil
    }
}

/// Whether the protocol's checksum covers the IP pseudo-header.
func hasPseudoHeader(_ proto: UInt8) -> Bool {
    proto == 6 || proto == 17 || proto == 136 || proto == 33 || proto == 58
}

/// Smallest header MATPacket requires, up to and including the checksum.
func minimumHeader(_ proto: UInt8) -> Int {
    switch proto {
    case 6: 20
    case 17, 136, 1, 58: 8
    case 33: 12
    default: 0
    }
}

// MARK: - Helpers

/// A heap copy of some bytes whose allocation ends exactly where they end, so AddressSanitizer
/// reports any access past the end; it starts at the allocation too (so any access before
/// it is reported), or, when `misaligned`, one byte into it.
struct ExactBuffer {
    let allocation: UnsafeMutableRawPointer
    let pad: Int
    let count: Int

    init(copying bytes: UnsafeRawBufferPointer, misaligned: Bool) {
        pad = misaligned ? 1 : 0
        count = bytes.count
        allocation = UnsafeMutableRawPointer.allocate(byteCount: pad + count, alignment: 1)
        if count > 0 { (allocation + pad).copyMemory(from: bytes.baseAddress!, byteCount: count) }
    }

    var base: UnsafeMutableRawPointer { allocation + pad }
    var buffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }

    func free() {
        allocation.deallocate()
    }
}

/// Builds an address of either family from fuzz bytes.
protocol FuzzAddress {
    init(fuzzBytes: [UInt8])
}

extension IPv4Address: FuzzAddress {
    init(fuzzBytes b: [UInt8]) { self.init(b[0], b[1], b[2], b[3]) }
}

extension IPv6Address: FuzzAddress {
    init(fuzzBytes b: [UInt8]) {
        let high = b[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let low = b[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        self.init(high: high, low: low)
    }
}

/// Parses and counts the drop reason of a refused packet.
func parseCounted(_ packet: UnsafeMutableRawBufferPointer) -> PacketLayout? {
    do {
        return try PacketLayout.parse(UnsafeRawPointer(packet.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!), length: packet.count)
    } catch {
        Stats.count(error)
        return nil
    }
}

func load16(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
    UInt16(p[offset]) << 8 | UInt16(p[offset + 1])
}

func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
}

func hex16(_ value: UInt16) -> String { hex(UInt8(value >> 8)) + hex(UInt8(value & 0xFF)) }

func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String, _ layout: PacketLayout?) {
    if !condition() { fail(message(), layout) }
}

func fail(_ message: String, _ layout: PacketLayout?) -> Never {
    var text = "FuzzPacket invariant violated: \(message)\n"
    if let layout { text += "layout: \(layout)\n" }
    fatalError(text)
}
