#if canImport(Glibc)
import Glibc
#endif
import CReference
import MATPacket

/// The translate suite: `PacketLayout.parse` + `Translator.translate` against the C
/// reference (Sources/CReference/reference_translate.c) on identical rings of packets.

/// One case of the suite.
struct TranslateCase {
    var name: String
    var family: AddressFamily
    var shape: PacketFactory.Shape
    /// Packets in the ring; each translation touches one packet's headers only.
    var ringCount: Int
}

let translateCases: [TranslateCase] = [
    // One packet in 16 without a UDP checksum, so both sides take the RFC 768 zero rule.
    TranslateCase(name: "udp64-ipv4", family: .ipv4,
                  shape: .init(transportProtocol: IPProtocolNumber.udp, totalLength: 64, partialChecksum: false,
                               zeroUDPChecksumEvery: 16),
                  ringCount: 1024),
    TranslateCase(name: "udp64-ipv6", family: .ipv6,
                  shape: .init(transportProtocol: IPProtocolNumber.udp, totalLength: 64, partialChecksum: false),
                  ringCount: 1024),
    TranslateCase(name: "tcp1500-ipv4", family: .ipv4,
                  shape: .init(transportProtocol: IPProtocolNumber.tcp, totalLength: 1500, partialChecksum: false),
                  ringCount: 1024),
    TranslateCase(name: "tcp1500-ipv6", family: .ipv6,
                  shape: .init(transportProtocol: IPProtocolNumber.tcp, totalLength: 1500, partialChecksum: false),
                  ringCount: 1024),
    // 45 segments of MSS 1448 behind one IP + TCP header: a 64 KiB TSO/GSO super-packet.
    TranslateCase(name: "tcp64k-gso-ipv4", family: .ipv4,
                  shape: .init(transportProtocol: IPProtocolNumber.tcp, totalLength: 20 + 32 + 45 * 1448,
                               partialChecksum: true),
                  ringCount: 256),
    TranslateCase(name: "tcp64k-gso-ipv6", family: .ipv6,
                  shape: .init(transportProtocol: IPProtocolNumber.tcp, totalLength: 40 + 32 + 45 * 1448,
                               partialChecksum: true),
                  ringCount: 256),
]

/// Translations per timed call of each body: about 0.7 ms at C speed. Short calls are rarely
/// preempted on a busy 2-core VM, and many of them make the medians steady.
let translationsPerCall = 65_536

/// Timed calls of each side per case; the harness reports the median of each.
let translateRounds = 101

/// Home and mobile addresses of this node and its peer (documentation ranges).
enum BenchAddresses {
    static let ipv4HoA = (IPv4Address(198, 51, 100, 10), IPv4Address(198, 51, 100, 20))
    static let ipv4MoA = (IPv4Address(203, 0, 113, 7), IPv4Address(192, 0, 2, 33))
    static let ipv6HoA = (IPv6Address("2001:db8:100::10")!, IPv6Address("2001:db8:100::20")!)
    static let ipv6MoA = (IPv6Address("2001:db8:a:1::7")!, IPv6Address("2001:db8:b:2::33")!)
}

/// `count` packets of `length` bytes, one every `stride` bytes of one raw allocation
/// (allocated once per case, freed with `base.deallocate()`).
struct PacketRing {
    let base: UnsafeMutableRawPointer
    let stride: Int
    let count: Int
    let length: Int

    init(count: Int, length: Int) {
        // A stride that is a multiple of 4 KiB would put every header in the same cache set.
        var stride = (length + 63) / 64 * 64 + 64
        if stride % 4096 == 0 { stride += 64 }
        self.stride = stride
        self.count = count
        self.length = length
        base = UnsafeMutableRawPointer.allocate(byteCount: stride * count, alignment: 64)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: stride * count)
    }

    func packet(_ index: Int) -> UnsafeMutableRawPointer { base + index * stride }

    func copy(from other: PacketRing) {
        base.copyMemory(from: other.base, byteCount: stride * count)
    }

    func equals(_ other: PacketRing) -> Bool {
        memcmp(base, other.base, stride * count) == 0
    }
}

/// The Swift side of the benchmark loop; `ref_translate_ring_ipv4/6` is the C side.
/// Even passes rewrite HoA -> MoA and odd passes back, so an even number of passes
/// leaves the ring as it was and every pass does real work.
@inline(never)
func swiftTranslateRing<Address: PacketAddress>(
    _ ring: PacketRing, passes: Int,
    toHoA: AddressRewrite<Address>, toMoA: AddressRewrite<Address>, checksum: ChecksumMode
) -> UInt64 {
    var result: UInt64 = 0
    let length = ring.length
    for pass in 0..<passes {
        let rewrite = pass & 1 == 0 ? toMoA : toHoA
        var packet = ring.base
        for _ in 0..<ring.count {
            do {
                let layout = try PacketLayout.parse(UnsafeRawPointer(packet), length: length)
                try Translator.translate(packet, layout: layout, rewrite: rewrite, checksum: checksum)
                result &+= UInt64(truncatingIfNeeded: layout.packetLength)
            } catch {
                result &+= UInt64(error.rawValue &+ 1) << 32
            }
            packet += ring.stride
        }
    }
    return result
}

/// Builds the rings of one case and returns its Swift and C bodies, running `passes`
/// passes per call.
func makeTranslateBodies(_ benchCase: TranslateCase, passes: Int)
    -> (swift: () -> UInt64, c: () -> UInt64, rings: (PacketRing, PacketRing, PacketRing))
{
    let pristine = PacketRing(count: benchCase.ringCount, length: benchCase.shape.totalLength)
    let swiftRing = PacketRing(count: benchCase.ringCount, length: benchCase.shape.totalLength)
    let cRing = PacketRing(count: benchCase.ringCount, length: benchCase.shape.totalLength)
    let ipLength = PacketFactory.ipHeaderLength(benchCase.family)
    // The virtio header's csum_start/csum_offset for a GSO packet: TCP header, field 16.
    let checksum: ChecksumMode = benchCase.shape.partialChecksum ? .partial(start: ipLength, offset: 16) : .complete
    let partialStart = benchCase.shape.partialChecksum ? ipLength : -1
    let partialOffset = benchCase.shape.partialChecksum ? 16 : -1
    let stride = swiftRing.stride, count = swiftRing.count, length = swiftRing.length

    let swiftBody: () -> UInt64
    let cBody: () -> UInt64
    if benchCase.family == .ipv4 {
        let (hoaSource, hoaDestination) = BenchAddresses.ipv4HoA
        let (moaSource, moaDestination) = BenchAddresses.ipv4MoA
        for index in 0..<pristine.count {
            PacketFactory.build(into: pristine.packet(index), shape: benchCase.shape, seed: index,
                                source: hoaSource, destination: hoaDestination)
        }
        let toHoA = AddressRewrite(source: hoaSource, destination: hoaDestination)
        let toMoA = AddressRewrite(source: moaSource, destination: moaDestination)
        swiftBody = {
            swiftTranslateRing(swiftRing, passes: passes, toHoA: toHoA, toMoA: toMoA, checksum: checksum)
        }
        cBody = {
            ref_translate_ring_ipv4(
                cRing.base.assumingMemoryBound(to: UInt8.self), stride, count, length, passes,
                hoaSource.value, hoaDestination.value, moaSource.value, moaDestination.value,
                partialStart, partialOffset)
        }
    } else {
        let (hoaSource, hoaDestination) = BenchAddresses.ipv6HoA
        let (moaSource, moaDestination) = BenchAddresses.ipv6MoA
        for index in 0..<pristine.count {
            PacketFactory.build(into: pristine.packet(index), shape: benchCase.shape, seed: index,
                                source: hoaSource, destination: hoaDestination)
        }
        let toHoA = AddressRewrite(source: hoaSource, destination: hoaDestination)
        let toMoA = AddressRewrite(source: moaSource, destination: moaDestination)
        func reference(_ address: IPv6Address) -> ref_ipv6 { ref_ipv6(high: address.high, low: address.low) }
        let (cHoASource, cHoADestination) = (reference(hoaSource), reference(hoaDestination))
        let (cMoASource, cMoADestination) = (reference(moaSource), reference(moaDestination))
        swiftBody = {
            swiftTranslateRing(swiftRing, passes: passes, toHoA: toHoA, toMoA: toMoA, checksum: checksum)
        }
        cBody = {
            ref_translate_ring_ipv6(
                cRing.base.assumingMemoryBound(to: UInt8.self), stride, count, length, passes,
                cHoASource, cHoADestination, cMoASource, cMoADestination, partialStart, partialOffset)
        }
    }
    swiftRing.copy(from: pristine)
    cRing.copy(from: pristine)
    return (swiftBody, cBody, (pristine, swiftRing, cRing))
}

/// Before timing: one pass (HoA -> MoA) of each side over fresh copies must give
/// byte-identical rings, the same result value, and packets whose checksums are all valid.
func checkTranslateCase(_ benchCase: TranslateCase) -> Bool {
    let (swiftOnce, cOnce, (pristine, swiftRing, cRing)) = makeTranslateBodies(benchCase, passes: 1)
    defer {
        pristine.base.deallocate()
        swiftRing.base.deallocate()
        cRing.base.deallocate()
    }
    let swiftResult = swiftOnce()
    let cResult = cOnce()
    let expected = UInt64(benchCase.ringCount * benchCase.shape.totalLength)
    var problems: [String] = []
    if swiftResult != expected || cResult != expected {
        problems.append("results swift=\(swiftResult) c=\(cResult) expected=\(expected)")
    }
    if !swiftRing.equals(cRing) { problems.append("Swift and C packets differ after one translation") }
    if swiftRing.equals(pristine) { problems.append("translation changed nothing") }
    for index in 0..<swiftRing.count {
        let packet = UnsafeRawPointer(swiftRing.packet(index))
        let valid = benchCase.family == .ipv4
            ? PacketFactory.checksumsAreValid(packet, shape: benchCase.shape, seed: index, as: IPv4Address.self)
            : PacketFactory.checksumsAreValid(packet, shape: benchCase.shape, seed: index, as: IPv6Address.self)
        if !valid {
            problems.append("packet \(index) has a bad checksum after translation")
            break
        }
    }
    for problem in problems { print("bench: translate-\(benchCase.name) check failed: \(problem)") }
    return problems.isEmpty
}

/// `mat-bench translate`: checks every case, then times each, one line per case.
func runTranslateBenchmarks() {
    var allGood = true
    for benchCase in translateCases where !checkTranslateCase(benchCase) { allGood = false }
    guard allGood else { exit(1) }
    for benchCase in translateCases {
        // An even number of passes leaves the packets as they started.
        let passes = max(2, translationsPerCall / benchCase.ringCount / 2 * 2)
        let (swiftBody, cBody, (pristine, swiftRing, cRing)) = makeTranslateBodies(benchCase, passes: passes)
        runCompared(ComparedCase(name: benchCase.name, operations: passes * benchCase.ringCount,
                                 swift: swiftBody, c: cBody), rounds: translateRounds)
        // Every call ran an even number of passes: both rings must be back where they began.
        if !swiftRing.equals(pristine) || !cRing.equals(pristine) {
            print("bench: translate-\(benchCase.name) check failed: packets not restored after timing")
            exit(1)
        }
        for ring in [pristine, swiftRing, cRing] { ring.base.deallocate() }
    }
}
