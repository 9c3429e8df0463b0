import MATDNS
import MATPacket
import Synchronization
@testable import MATIMSClient

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

/// Lower-case hex of bytes, for failure messages and captures.
func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] })
}

/// A name from a test literal.
func name(_ text: String) -> DNSName {
    do { return try DNSName(text) } catch { preconditionFailure("bad test name \(text): \(error)") }
}

/// An address from a test literal.
func ip(_ text: String) -> IPAddress {
    guard let address = IPAddress(text) else { preconditionFailure("bad test address \(text)") }
    return address
}

enum Fixture {
    static let zone = name("mat.example.")
    static let names = try! MappingNames(zone: zone) // valid constant
    static let hoaA = ip("198.51.100.10")
    static let hoaB = ip("198.51.100.20")
    /// Key of node A, secret bytes 0..31 (`AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=`).
    static let keyA = TSIGKey(name: name("10.100.51.198.hoa.mat.example."), secret: Array(0..<32))
    /// Ed25519 public keys of RFC 8032 §7.1 tests 1 and 2, in base64.
    static let publicKeyA = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    static let publicKeyB = "PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw="
}

/// A clock tests move by hand.
final class TestClock: Sendable {
    private let value: Mutex<UInt64>
    init(_ start: UInt64 = 1_800_000_000) { value = Mutex(start) }
    var now: UInt64 { value.withLock { $0 } }
    func advance(_ seconds: UInt64) { value.withLock { $0 += seconds } }
    var closure: IMSClock { { [self] in self.now } }
}

/// Collects log lines.
final class LogRecorder: Sendable {
    private let lines = Mutex<[(IMSLogLevel, String)]>([])
    var logger: IMSLogger { { [self] level, text in self.lines.withLock { $0.append((level, text)) } } }
    var all: [(IMSLogLevel, String)] { lines.withLock { $0 } }
    func contains(_ level: IMSLogLevel, _ fragment: String) -> Bool {
        all.contains { $0.0 == level && $0.1.contains(fragment) }
    }
}
