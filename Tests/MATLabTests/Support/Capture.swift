#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// A tcpdump capture on one of the router's ports, read back with tshark's IP, TCP, UDP
/// and ICMP checksum validation on.
final class Capture {
    let file: String
    private let process: Spawned
    private var packetsRead: [CapturedPacket]?

    /// Starts capturing (whole packets) on the router's port `interface` of `lab`.
    init(_ lab: Lab, interface: String, name: String) throws {
        file = lab.path("\(name).pcap")
        process = try lab.spawn("router", ["tcpdump", "-n", "-i", interface, "-U", "-s", "0", "-Z", "root", "-w", file])
        guard process.waitForOutput(timeout: 10, { $0.contains("listening on") }) else {
            throw LabError("tcpdump on \(interface) did not start:\n\(process.wait(timeout: 1).summary)")
        }
    }

    /// Stops the capture (SIGINT, so tcpdump flushes the file).
    func stop() throws {
        usleep(200_000)  // the last packets may still be on their way through the bridge
        process.signal(SIGINT)
        let result = process.wait(timeout: 10)
        guard FileManager.default.fileExists(atPath: file) else {
            throw LabError("tcpdump left no capture:\n\(result.summary)")
        }
    }

    /// The tshark fields read for each packet; a field with several occurrences (the outer
    /// and the quoted header of an ICMP error) lists them separated by commas.
    static let fields = [
        "frame.number", "_ws.col.Protocol", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
        "ip.checksum.status", "tcp.checksum.status", "udp.checksum.status",
        "icmp.checksum.status", "icmpv6.checksum.status", "icmp.type", "icmpv6.type",
        "tcp.checksum", "tcp.checksum_calculated",
    ]

    /// The packets, dissected with checksum validation on.
    func packets() throws -> [CapturedPacket] {
        if let packetsRead { return packetsRead }
        var arguments = ["tshark", "-n", "-r", file,
                         "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                         "-o", "udp.check_checksum:TRUE",
                         "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
        for field in Self.fields { arguments += ["-e", field] }
        let output = try check(arguments, timeout: 120)
        let packets = output.split(separator: "\n").map { line in
            let columns = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            var values: [String: [String]] = [:]
            for (index, field) in Self.fields.enumerated() where index < columns.count {
                values[field] = columns[index].isEmpty ? [] : columns[index].split(separator: ",").map(String.init)
            }
            return CapturedPacket(values: values)
        }
        packetsRead = packets
        return packets
    }
}

extension Capture {
    /// For a failed check: tshark's full dissection of the first two of `packets`, and a
    /// copy of the capture kept in the temporary directory (the lab's goes with it).
    func explain(_ packets: [CapturedPacket]) -> String {
        guard !packets.isEmpty else { return "" }
        let kept = FileManager.default.temporaryDirectory.appendingPathComponent(
            "matlab-failed-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).pcap").path
        let copied = (try? FileManager.default.copyItem(atPath: file, toPath: kept)) != nil
        let frames = packets.prefix(2).map(\.number).map { "frame.number == \($0)" }.joined(separator: " || ")
        let detail = (try? check(["tshark", "-n", "-r", file, "-o", "tcp.check_checksum:TRUE", "-x", "-V", "-Y", frames],
                                 timeout: 60)) ?? "(tshark -V failed)"
        return (copied ? "capture kept at \(kept)\n" : "") + String(detail.prefix(12_000))
    }

    /// What a translating path may put on the wire between the VM node and the CN: no
    /// address but their MoAs (and the lab's own), and no packet with a bad checksum.
    /// Returns the packets for the caller's own counts.
    @discardableResult
    func expectOnlyMoAsWithGoodChecksums(sourceLocation: SourceLocation = #_sourceLocation) throws -> [CapturedPacket] {
        let packets = try packets()
        let vm = Addr.node("vm"), cn = Addr.node("cn")
        let allowed = [vm.mobile4, vm.mobile6, cn.mobile4, cn.mobile6]
        let foreign = packets.filter { $0.addresses.contains { !allowed.contains($0) && !Addr.isInfrastructure($0) } }
        #expect(foreign.isEmpty, "addresses other than MoAs on the wire:\n\(sample(foreign))", sourceLocation: sourceLocation)
        let bad = packets.filter { $0.checksumStatuses.contains { $0.1 == "0" } }
        #expect(bad.isEmpty, "\(bad.count) packets with bad checksums:\n\(sample(bad))\n\(explain(bad))",
                sourceLocation: sourceLocation)
        return packets
    }

    /// How many packets match a tshark display filter.
    func count(matching filter: String) throws -> Int {
        let output = try check(["tshark", "-n", "-r", file, "-Y", filter, "-T", "fields", "-e", "frame.number"], timeout: 120)
        return output.split(separator: "\n").count
    }
}

struct CapturedPacket: CustomStringConvertible {
    var values: [String: [String]]

    subscript(_ field: String) -> [String] { values[field] ?? [] }

    var number: String { self["frame.number"].first ?? "?" }
    var protocolName: String { self["_ws.col.Protocol"].first ?? "?" }
    var addresses: [String] { self["ip.src"] + self["ip.dst"] + self["ipv6.src"] + self["ipv6.dst"] }
    var isIPv6: Bool { !self["ipv6.src"].isEmpty }

    /// Checksum statuses by protocol: tshark says 0 bad, 1 good, 2 unverified.
    ///
    /// A TCP checksum of 0xffff where the sum gives 0x0000 is the same value in ones'
    /// complement (RFC 1624, section 3) and every receiver takes it; tshark calls it bad.
    /// Linux writes it when it finishes a checksum in software (`skb_checksum_help`
    /// turns a zero result into 0xffff), as on an uplink with transmit offload off.
    var checksumStatuses: [(String, String)] {
        ["ip", "tcp", "udp", "icmp", "icmpv6"].flatMap { proto in
            self["\(proto).checksum.status"].map { status in
                let negativeZero = proto == "tcp" && status == "0"
                    && self["tcp.checksum"].first == "0xffff" && self["tcp.checksum_calculated"].first == "0x0000"
                return (proto, negativeZero ? "1" : status)
            }
        }
    }

    var description: String {
        "#\(number) \(protocolName) \(addresses.joined(separator: " ")) checksums \(checksumStatuses.map { "\($0.0)=\($0.1)" }.joined(separator: " "))"
    }
}
