@testable import MATDNS

// Captured wire messages from BIND 9.18.49 tools (Debian bookworm), used as fixed bytes
// so no test needs a network tool. Captures were made on loopback: nsupdate/dig sent to a
// Python UDP relay in front of a throwaway `named` (zone mip.test, keys below).

/// Decodes hex, ignoring whitespace; traps on bad input, which only test literals feed it.
func hex(_ text: String) -> [UInt8] {
    let digits = Array(text.utf8.filter { !($0 == 32 || $0 == 10 || $0 == 9) })
    precondition(digits.count % 2 == 0, "odd hex literal")
    func nibble(_ c: UInt8) -> UInt8 {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: preconditionFailure("bad hex digit")
        }
    }
    return stride(from: 0, to: digits.count, by: 2).map { nibble(digits[$0]) << 4 | nibble(digits[$0 + 1]) }
}

/// A name from a test literal.
func name(_ text: String) -> DNSName {
    do { return try DNSName(text) } catch { preconditionFailure("bad test name \(text): \(error)") }
}

enum Vectors {
    /// Secret bytes 0..31, base64 `AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=`.
    static let mn1Key = TSIGKey(name: name("mn1.hoa.mip.test."), algorithm: .hmacSHA256, secret: Array(0..<32))
    /// Secret bytes 0..44 (hmac-sha512), used by `dig -y`.
    static let k2Key = TSIGKey(name: name("k2.hoa.mip.test."), algorithm: .hmacSHA512, secret: Array(0..<45))
    static let keyring = TSIGKeyring([mn1Key, k2Key])

    /// The golden vector from shared/research/ecosystem.md §3.2: nsupdate, key mn1,
    /// `prereq nxrrset 8.b.d.0.1.0.0.2.hoa.mip.test. AAAA`, `update delete … AAAA`,
    /// `update add … 30 AAAA 2001:db8:1::42`. TSIG record starts at offset 106.
    static let golden = hex("""
        08ec28000001000100020001036d6970047465737400000600010138016201640130013101300130013203686f61036d6970
        047465737400001c00fe000000000000c01a001c00ff000000000000c01a001c00010000001e001020010db800010000000000
        0000000042036d6e3103686f61036d697004746573740000fa00ff00000000003d0b686d61632d7368613235360000006b0937
        50012c00201038d59c271bebfa1c17d7186e38628040240a29e7391ee586cccf4e27d4834208ec00000000
        """)
    static let goldenTime: UInt64 = 1_795_766_096
    static let goldenTSIGStart = 106
    static let goldenMAC = hex("1038d59c271bebfa1c17d7186e38628040240a29e7391ee586cccf4e27d48342")

    /// named's BADTIME reply to `golden` sent at server time 1795772244: signed, Time
    /// Signed copied from the request, server clock in Other Data.
    static let goldenBadTimeReply = hex("""
        08eca8090001000000000001036d697004746573740000060001036d6e3103686f61036d697004746573740000fa00ff0000
        000000430b686d61632d7368613235360000006b093750012c0020d30af272f856cc32fdeb1e1123434a04969f9155f0a109
        50fd6dfb67afbb7eb908ec0012000600006b094f54
        """)
    static let badTimeServerClock: UInt64 = 1_795_772_244

    /// nsupdate (key mn1): `prereq yxrrset 10.100.51.198.hoa.mip.test. TXT`, `update delete
    /// … A`, `update add … 30 A 198.51.100.10`, signed at 1795772238; and named's signed
    /// NOERROR reply.
    static let updateRequest = hex("""
        3b2628000001000100020001036d697004746573740000060001023130033130300235310331393803686f61036d69700474
        65737400001000ff000000000000c01a000100ff000000000000c01a000100010000001e0004c633640a036d6e3103686f61
        036d697004746573740000fa00ff00000000003d0b686d61632d7368613235360000006b094f4e012c00205076932db16bb9
        0f1d0c49a2ac3b2c5465b8beccf078aae52ffafcf3ae6d0cc43b2600000000
        """)
    static let updateReply = hex("""
        3b26a8000001000000000001036d697004746573740000060001036d6e3103686f61036d697004746573740000fa00ff0000
        0000003d0b686d61632d7368613235360000006b094f4e012c00208341278f0cc5ccf99cd8ca171adaa02c32732e267c4b5e
        66086316d850fad3483b2600000000
        """)
    static let updateTime: UInt64 = 1_795_772_238

    /// dig +noedns -y hmac-sha512:k2…: `10.100.51.198.hoa.mip.test A`, and named's signed
    /// answer (owner compressed to the question, `c00c`). Signed at 1795772238.
    static let queryRequest = hex("""
        6acd01200001000000000001023130033130300235310331393803686f61036d697004746573740000010001026b3203686f
        61036d697004746573740000fa00ff00000000005d0b686d61632d7368613531320000006b094f4e012c0040940ad38ced99
        bfabd550a83eed2f9d4c3d57e7c663f6ec2ad43f6d1911d5d6f5640d8ca2e52adab17253bdbe58645e6de16f6fb9799d6a6e
        163257d2eb75959c6acd00000000
        """)
    static let queryReply = hex("""
        6acd85000001000100000001023130033130300235310331393803686f61036d697004746573740000010001c00c00010001
        0000001e0004c633640a026b3203686f61036d697004746573740000fa00ff00000000005d0b686d61632d73686135313200
        00006b094f4e012c004034ec97d555be14dcaa61696531985e7e12d8486040194a36754241f18eaabf6e68dc80f44fcee84c
        49e3f4ca502b847dd4ee3f20d58360ef51ec28eea0d1d7ea6acd00000000
        """)

    /// nsupdate with an unknown key name `nokey.hoa.mip.test.` (same secret) at
    /// 1795772243, and named's unsigned NOTAUTH/BADKEY reply.
    static let badKeyRequest = hex("""
        d9fe28000001000100020001036d697004746573740000060001023130033130300235310331393803686f61036d69700474
        65737400001000ff000000000000c01a000100ff000000000000c01a000100010000001e0004c633640a056e6f6b65790368
        6f61036d697004746573740000fa00ff00000000003d0b686d61632d7368613235360000006b094f53012c0020ea63596de0
        0460cc612b3de7944ac8ade5f0e015a77a04b97b652f9b9815d88bd9fe00000000
        """)
    static let badKeyReply = hex("""
        d9fea8090001000000000001036d697004746573740000060001056e6f6b657903686f61036d697004746573740000fa00ff
        00000000001d0b686d61632d7368613235360000006b094f53012c0000d9fe00110000
        """)
    static let badKeyTime: UInt64 = 1_795_772_243

    /// nsupdate with key name mn1 but a wrong secret at 1795772244, and named's unsigned
    /// NOTAUTH/BADSIG reply.
    static let badSigRequest = hex("""
        b57028000001000100020001036d697004746573740000060001023130033130300235310331393803686f61036d69700474
        65737400001000ff000000000000c01a000100ff000000000000c01a000100010000001e0004c633640a036d6e3103686f61
        036d697004746573740000fa00ff00000000003d0b686d61632d7368613235360000006b094f54012c002008b0ada09ccc7a
        5b8225730ba08b186a2f3daf9344e265fe2ae3ea61837406cbb57000000000
        """)
    static let badSigReply = hex("""
        b570a8090001000000000001036d697004746573740000060001036d6e3103686f61036d697004746573740000fa00ff0000
        0000001d0b686d61632d7368613235360000006b094f54012c0000b57000100000
        """)
    static let badSigTime: UInt64 = 1_795_772_244

    /// dig (EDNS on, cookie option) -y hmac-sha512:k2…, signed at 1795772213: OPT must come
    /// before the TSIG record.
    static let ednsQuery = hex("""
        ee6501200001000000000002023130033130300235310331393803686f61036d69700474657374000001000100002904d000
        000000000c000a0008d1e867eb72bfa913026b3203686f61036d697004746573740000fa00ff00000000005d0b686d61632d
        7368613531320000006b094f35012c0040c720517cd48fe25a7a882f196aed285cc0f83ed31fede3fe7c337ed47ce717b11c
        704fd8c0b59b608ba181e9bacfab910f9c15ddd26bea6c4586a502e9f1c440ee6500000000
        """)
    static let ednsQueryTime: UInt64 = 1_795_772_213

    /// nsupdate (key mn1) at 1795772214: `prereq yxdomain`, `prereq yxrrset … TXT`,
    /// `update delete … A 192.0.2.7`, `update delete … TXT`, `update add … 30 A
    /// 198.51.100.10`, `update add … 30 TXT "seq=7" "t=1795766096"`.
    static let richUpdate = hex("""
        25d728000001000200040001036d697004746573740000060001023130033130300235310331393803686f61036d69700474
        6573740000ff00ff000000000000c01a001000ff000000000000c01a000100fe000000000004c0000207c01a001000ff0000
        00000000c01a000100010000001e0004c633640ac01a001000010000001e0013057365713d370c743d313739353736363039
        36036d6e3103686f61036d697004746573740000fa00ff00000000003d0b686d61632d7368613235360000006b094f36012c
        0020bce7988d153472216e81f31d786386e4aa86e047a0f5422476700ca261cf7bfa25d700000000
        """)
    static let richUpdateTime: UInt64 = 1_795_772_214

    /// Every captured message, for truncation and mutation tests.
    static let all: [[UInt8]] = [
        golden, goldenBadTimeReply, updateRequest, updateReply, queryRequest, queryReply,
        badKeyRequest, badKeyReply, badSigRequest, badSigReply, ednsQuery, richUpdate,
    ]
}

/// SplitMix64: a tiny, well-mixed PRNG so randomized tests replay exactly.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// `message` with its last (TSIG) record cut off and ARCOUNT lowered: the bytes the
/// signer saw.
func strippingTSIG(_ message: [UInt8], at start: Int) -> [UInt8] {
    var bytes = Array(message[0..<start])
    let arcount = UInt16(bytes[10]) << 8 | UInt16(bytes[11])
    bytes[10] = UInt8((arcount - 1) >> 8)
    bytes[11] = UInt8(truncatingIfNeeded: arcount - 1)
    return bytes
}
