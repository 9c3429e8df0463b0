#if canImport(Glibc)
import Glibc
#endif
import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import MATPacket
import Synchronization
import Testing

func name(_ text: String) -> DNSName { try! DNSName(text) }

let zoneName = name("mat.example.")

func hoa(_ address: String) -> DNSName { try! IMSNames.hoaName(IPAddress(address)!, zone: zoneName) }
func moa(_ address: String) -> DNSName { try! IMSNames.moaName(IPAddress(address)!, zone: zoneName) }
func a(_ address: String) -> DNSRecordData { .a(IPv4Address(address)!.value) }
func aaaa(_ address: String) -> DNSRecordData {
    let v6 = IPv6Address(address)!
    return .aaaa(high: v6.high, low: v6.low)
}

let node1 = hoa("198.51.100.10")
let node2 = hoa("198.51.100.20")
let node6 = hoa("2001:db8:100::10")
let node1Key = TSIGKey(name: node1, secret: Array(repeating: 0x11, count: 32))
let node2Key = TSIGKey(name: node2, secret: Array(repeating: 0x22, count: 32))
let node6Key = TSIGKey(name: node6, secret: Array(repeating: 0x66, count: 32))
let adminKey = TSIGKey(name: name("admin.mat.example."), secret: Array(repeating: 0xAD, count: 32))
let transferKey = TSIGKey(name: name("xfr.mat.example."), secret: Array(repeating: 0x77, count: 32))
/// A key the server does not know, with a node's name.
let strangerKey = TSIGKey(name: node1, secret: Array(repeating: 0x99, count: 32))

let baseTime: UInt64 = 1_800_000_000

/// A settable clock, shared between the test and the core.
final class TestClock: Sendable {
    private let value = Mutex<UInt64>(baseTime)
    var now: UInt64 {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
    func advance(_ seconds: UInt64) { value.withLock { $0 += seconds } }
    var closure: @Sendable () -> UInt64 { { self.now } }
}

func testZone() -> ZoneConfiguration {
    var zone = ZoneConfiguration(name: zoneName)
    zone.nameServers = [name("ns.mat.example.")]
    zone.glue = [(name("ns.mat.example."), IPAddress("192.0.2.53")!)]
    zone.adminKeys = [adminKey.name]
    zone.allowTransfer = [.key(transferKey.name), .prefix(IMSPrefix("127.0.0.0/8")!)]
    return zone
}

func testConfiguration(stateDirectory: String? = nil) -> IMSConfiguration {
    IMSConfiguration(listen: [IPEndpoint("127.0.0.1:0", defaultPort: 53)!], stateDirectory: stateDirectory, journalSync: .write,
                     keys: [node1Key, node2Key, node6Key, adminKey, transferKey], zones: [testZone()])
}

func makeCore(clock: TestClock = TestClock(), stateDirectory: String? = nil,
              configure: (inout IMSConfiguration) -> Void = { _ in }) throws -> IMSCore {
    var config = testConfiguration(stateDirectory: stateDirectory)
    configure(&config)
    return try IMSCore(configuration: config, clock: clock.closure)
}

/// A signed UPDATE and the MAC its response must chain.
struct SignedRequest {
    var bytes: [UInt8]
    var mac: [UInt8]
    var key: TSIGKey
}

func update(_ key: TSIGKey?, at time: UInt64 = baseTime, id: UInt16 = 0x1234, zone: DNSName = zoneName,
            fudge: UInt16 = 300, _ build: (inout DNSUpdateBuilder) -> Void) throws -> SignedRequest {
    var builder = DNSUpdateBuilder(id: id, zone: zone)
    build(&builder)
    let bytes = try builder.message.encode()
    guard let key else { return SignedRequest(bytes: bytes, mac: [], key: node1Key) }
    let signed = try TSIG.sign(bytes, key: key, now: time, fudge: fudge)
    return SignedRequest(bytes: signed.bytes, mac: signed.mac, key: key)
}

/// Sends an UPDATE through the core as a datagram and returns the parsed reply, checking
/// that a reply with a TSIG verifies against the request.
@discardableResult
func send(_ request: SignedRequest, to core: IMSCore, sourceLocation: SourceLocation = #_sourceLocation) throws -> DNSMessage {
    let reply = try #require(core.handleDatagram(request.bytes), sourceLocation: sourceLocation)
    let message = try DNSMessage(bytes: reply)
    if let tsig = message.tsig, !tsig.data.mac.isEmpty {
        let outcome = TSIG.verifyResponse(reply, key: request.key, requestMAC: request.mac, now: tsig.data.timeSigned)
        #expect(outcome.context.map { .verified($0) } == outcome, "reply TSIG does not verify", sourceLocation: sourceLocation)
    }
    return message
}

func rcode(_ message: DNSMessage) -> DNSResponseCode { message.extendedResponseCode }

func queryBytes(_ qname: DNSName, _ type: DNSType, id: UInt16 = 7, edns: UInt16? = nil,
                qclass: DNSClass = .in) throws -> [UInt8] {
    var message = DNSMessage(header: DNSHeader(id: id, recursionDesired: true),
                             questions: [DNSQuestion(name: qname, type: type, class: qclass)])
    if let edns { message.edns = EDNS(udpPayloadSize: edns) }
    return try message.encode()
}

func query(_ core: IMSCore, _ qname: DNSName, _ type: DNSType, edns: UInt16? = nil, tcp: Bool = false,
           source: IPEndpoint? = nil) throws -> DNSMessage {
    let bytes = try queryBytes(qname, type, edns: edns)
    let reply: [UInt8]
    if tcp {
        reply = try #require(core.handleStream(bytes, from: source).first)
    } else {
        reply = try #require(core.handleDatagram(bytes, from: source))
    }
    return try DNSMessage(bytes: reply)
}
