#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import MATLinux
import Testing

/// The nfnetlink reader of a set's elements: what it makes of the kernel's answer (any
/// bytes), and, as root, the real answer against nft's listing of the same set.
struct NftablesSetElementsTests {
    typealias Element = NftablesSetElements.Element

    /// One element: NFTA_LIST_ELEM { KEY { DATA_VALUE }, TIMEOUT, EXPIRATION } (nested types
    /// flagged as the kernel flags them).
    static func element(_ key: [UInt8], timeout: UInt64? = nil, expiration: UInt64? = nil) -> [UInt8] {
        let attribute = NftablesCountersTests.attribute
        var body = attribute(0x8001, attribute(1, key))
        if let timeout { body += attribute(4, NftablesCountersTests.bigEndian(timeout)) }
        if let expiration { body += attribute(5, NftablesCountersTests.bigEndian(expiration)) }
        return attribute(0x8001, body)
    }

    /// An NFT_MSG_NEWSETELEM message (12) holding `elements`.
    static func message(_ elements: [[UInt8]], sequence: UInt32 = 7) -> [UInt8] {
        let attribute = NftablesCountersTests.attribute
        let payload: [UInt8] = [1, 0, 0, 0] + attribute(1, Array("t".utf8) + [0]) + attribute(2, Array("heard4".utf8) + [0])
            + attribute(0x8003, elements.flatMap { $0 })
        return NftablesCountersTests.message(type: NftablesCounters.messageType(12), sequence: sequence, payload)
    }

    static func parse(_ bytes: [UInt8]) -> (elements: [Element], end: NftablesCounters.End) {
        bytes.withUnsafeBytes { NftablesSetElements.parse($0, sequence: 7, portID: 42) }
    }

    @Test func elementsOfADumpAreReadWithTheirTimeouts() {
        let done = NftablesCountersTests.message(type: 3, [0, 0, 0, 0])
        let six = [UInt8](repeating: 0, count: 15) + [1]
        let first = Self.message([Self.element([198, 51, 100, 1], expiration: 59_500),
                                  Self.element([198, 51, 100, 2], timeout: 30_000, expiration: 12),
                                  Self.element([198, 51, 100, 3])])
        let second = Self.message([Self.element(six, expiration: 1 << 40)])
        let read = Self.parse(first + second)
        #expect(read.elements == [Element(key: [198, 51, 100, 1], expiration: 59_500),
                                  Element(key: [198, 51, 100, 2], timeout: 30_000, expiration: 12),
                                  Element(key: [198, 51, 100, 3]), Element(key: six, expiration: 1 << 40)])
        #expect(read.end == .more)
        #expect(Self.parse(first + done).end == .done)
        // Another request's answer; an element without a key, or a timeout of the wrong size.
        #expect(Self.parse(Self.message([Self.element([1, 2, 3, 4])], sequence: 6)).elements.isEmpty)
        let attribute = NftablesCountersTests.attribute
        let odd = Self.message([attribute(0x8001, attribute(5, [0, 0, 0, 9])),
                                attribute(0x8001, attribute(0x8001, attribute(1, [9, 9, 9, 9])) + attribute(5, [0, 0, 0, 9]))])
        #expect(Self.parse(odd).elements == [Element(key: [9, 9, 9, 9])])
        let error: Int32 = -ENOENT
        #expect(Self.parse(NftablesCountersTests.message(type: 2, withUnsafeBytes(of: error) { Array($0) } + [UInt8](repeating: 0, count: 16))).end
                == .failed(ENOENT))
    }

    @Test func anyBytesAreSafe() {
        let whole = Self.message([Self.element([198, 51, 100, 1], timeout: 5, expiration: 59_500),
                                  Self.element([UInt8](repeating: 7, count: 16), expiration: 3)])
        // Every truncation, lengths past the end or below the header's, noise anywhere.
        for count in 0..<whole.count {
            let read = Self.parse(Array(whole.prefix(count)))
            if count > 0 { #expect(read.end != .done && read.end != .more, "\(count)") }
            #expect(read.elements.isEmpty)
        }
        var long = whole
        long[0] = 0xff
        #expect(Self.parse(long).end == .malformed("a message of 255 bytes in \(whole.count)"))
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            var noise = whole
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                noise[Int.random(in: 16..<noise.count, using: &generator)] = .random(in: 0...255, using: &generator)
            }
            for element in Self.parse(noise).elements { #expect(element.key.count <= noise.count) }
            _ = Self.parse((0..<Int.random(in: 0...96, using: &generator)).map { _ in .random(in: 0...255, using: &generator) })
        }
    }
}

@Suite(.enabled(if: isRoot || mustRunRootTests, "needs root (runs in CI)"))
struct NftablesSetElementsLabTests {
    /// Sets with timeouts (one element with its own, one added later than the others)
    /// and one without: the reader gives nft's elements, with what is left of each
    /// timeout within a second of nft's (nft rounds down to whole seconds, and reads a
    /// moment later). A set or table that is not there: ENOENT.
    @Test func theDumpEqualsNftsListing() throws {
        let lab = try LabNamespace()
        try run("ip", "netns", "exec", lab.name, "nft", """
            add table inet t
            add set inet t heard4 { type ipv4_addr; flags dynamic, timeout; timeout 60s; }
            add set inet t heard6 { type ipv6_addr; flags dynamic, timeout; timeout 60s; }
            add set inet t plain { type ipv4_addr; }
            add element inet t heard4 { 198.51.100.1, 198.51.100.2 timeout 30s, 198.51.100.3 expires 20s }
            add element inet t heard6 { 2001:db8:100::20, 2001:db8:100::21 }
            add element inet t plain { 192.0.2.1 }
            """)
        defer { _ = try? run("ip", "netns", "exec", lab.name, "nft", "delete", "table", "inet", "t") }
        for set in ["heard4", "heard6", "plain"] {
            let read = try lab.enter { try NftablesSetElements.read(family: "inet", table: "t", set: set) }
            let listing = try run("ip", "netns", "exec", lab.name, "nft", "-j", "list", "set", "inet", "t", set)
            let json = try JSONSerialization.jsonObject(with: Data(listing.utf8)) as? [String: Any]
            let listed = (json?["nftables"] as? [[String: Any]] ?? []).compactMap { $0["set"] as? [String: Any] }.first
            let setTimeout = (listed?["timeout"] as? NSNumber)?.uint64Value
            // nft lists an element with nothing but a key as its key alone.
            let elements: [(String, UInt64?, UInt64?)] = (listed?["elem"] as? [Any] ?? []).map { item in
                guard let element = (item as? [String: Any])?["elem"] as? [String: Any] else { return ("\(item)", nil, nil) }
                return ("\(element["val"] ?? "")", (element["timeout"] as? NSNumber)?.uint64Value, (element["expires"] as? NSNumber)?.uint64Value)
            }
            #expect(read.count == elements.count, "\(set): \(read) against \(listing)")
            for (text, timeout, expires) in elements {
                let key = try #require(address(text), "\(text)")
                let element = try #require(read.first { $0.key == key }, "\(set): \(text) not read: \(read)")
                // The kernel names an element's own timeout only when it is not the set's.
                #expect((element.timeout ?? setTimeout.map { $0 * 1_000 }) == timeout.map { $0 * 1_000 } ?? setTimeout.map { $0 * 1_000 },
                        "\(set) \(text)")
                if let expires, let left = element.expiration {
                    #expect(left / 1_000 >= expires && left / 1_000 <= expires + 2, "\(set) \(text): \(left) ms, nft \(expires) s")
                } else {
                    #expect(element.expiration == nil && expires == nil, "\(set) \(text)")
                }
            }
        }
        let threeLeft = try lab.enter { try NftablesSetElements.read(family: "inet", table: "t", set: "heard4") }
            .first { $0.key == [198, 51, 100, 3] }?.expiration
        #expect(threeLeft.map { $0 <= 20_000 && $0 > 5_000 } == true, "\(String(describing: threeLeft))")
        for (family, table, set) in [("inet", "t", "absent"), ("inet", "absent", "heard4"), ("ip", "t", "heard4")] {
            #expect(throws: SystemError("read the elements of nftables set \(family) \(table) \(set)", errno: ENOENT)) {
                try lab.enter { try NftablesSetElements.read(family: family, table: table, set: set) }
            }
        }
    }

    /// An address's bytes in network order.
    func address(_ text: String) -> [UInt8]? {
        var four = in_addr(), six = in6_addr()
        if inet_pton(AF_INET, text, &four) == 1 { return withUnsafeBytes(of: four) { Array($0) } }
        if inet_pton(AF_INET6, text, &six) == 1 { return withUnsafeBytes(of: six) { Array($0) } }
        return nil
    }
}
