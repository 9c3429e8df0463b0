import MATConfig
import MATPacket

/// Behind 1:1 NAT (every large public cloud) the address on the uplink is private: peers
/// reach the node at the NAT's public address, which forwards to the private one and back.
/// The node keeps translating with its private address (the engine and the inbound
/// diversion see the packets after the NAT rewrote them) and publishes the public one: it
/// is registered in the IMS and announced in alerts, and peers divert, translate and
/// challenge it as any MoA (docs/datapath.md, "Behind NAT").
///
/// `public-address` entries (docs/config.md) say which public address stands for which
/// local one: a fixed address, or `auto`, asked of the IMS, which answers with the
/// source address it sees (docs/ims.md, "What is my address"). Pure: the service thread
/// asks and remembers the answers.
public struct PublicAddresses: Sendable, Equatable {
    /// One `public-address` line.
    public struct Entry: Sendable, Equatable {
        /// The uplink it is for; nil: whichever uplink carries the MoA.
        public var uplink: String?
        /// The public address, or nil for `auto`.
        public var address: IPAddress?
        public var line: Int
    }

    /// What stands for a local MoA in registrations and alerts.
    public enum Resolution: Sendable, Equatable {
        /// No NAT configured for it: the local MoA is the public one.
        case unchanged
        /// A configured public address.
        case fixed(IPAddress)
        /// Ask the IMS which address it sees.
        case ask
    }

    public var entries: [Entry]

    public init(entries: [Entry] = []) { self.entries = entries }

    /// Whether any entry asks the IMS.
    public var asksIMS: Bool { entries.contains { $0.address == nil } }

    /// The public address of `local`, a MoA on `interface`: an entry for that uplink wins
    /// over a global one; a fixed address applies only to its own family, `auto` to both.
    public func resolve(_ local: IPAddress, interface: String?) -> Resolution {
        func pick(_ candidates: [Entry]) -> Resolution? {
            if let fixed = candidates.lazy.compactMap(\.address).first(where: { $0.family == local.family }) {
                return .fixed(fixed)
            }
            return candidates.contains { $0.address == nil } ? .ask : nil
        }
        if let interface,
           let perUplink = pick(entries.filter { $0.uplink.map { UplinkSelection.matches($0, interface) } ?? false }) {
            return perUplink
        }
        return pick(entries.filter { $0.uplink == nil }) ?? .unchanged
    }

    /// Parses one `public-address` value: `ADDRESS`, `auto`, `UPLINK=ADDRESS` or
    /// `UPLINK=auto` (``validate(uplinks:domainPrefixes:hasIMS:)`` checks it against the
    /// rest of the file once all of it is read).
    static func parse(_ entry: ConfigFile.Entry, existing: [Entry]) throws(ConfigError) -> Entry {
        func fail(_ message: String) -> ConfigError { ConfigError(line: entry.line, key: entry.key, message: message) }
        var uplink: String?
        var value = Substring(entry.value)
        if let equals = value.firstIndex(of: "=") {
            let name = String(value[..<equals])
            guard !name.isEmpty, !name.contains(where: { $0 == "/" || $0.isWhitespace }) else {
                throw fail("\(name) is not an interface name (forms: ADDRESS, auto, UPLINK=ADDRESS, UPLINK=auto)")
            }
            uplink = name
            value = value[value.index(after: equals)...]
        }
        let address: IPAddress?
        if value == "auto" {
            address = nil
        } else if let parsed = IPAddress(String(value)) {
            address = parsed
        } else {
            throw fail("\(value) is not an address or auto (forms: ADDRESS, auto, UPLINK=ADDRESS, UPLINK=auto)")
        }
        let where_ = uplink.map { "for \($0)" } ?? "for every uplink"
        for other in existing where other.uplink == uplink {
            switch (other.address, address) {
            case (nil, nil):
                throw fail("auto \(where_) given twice (line \(other.line))")
            case (let a?, let b?) where a.family == b.family:
                throw fail("a second \(b.family) public address \(where_) (line \(other.line) has \(a); one per family)")
            case (nil, _?), (_?, nil):
                throw fail("both auto and a fixed address \(where_) (line \(other.line)): use one or the other")
            default:
                break
            }
        }
        return Entry(uplink: uplink, address: address, line: entry.line)
    }

    /// Checks the entries against the rest of the file: each uplink named is one of the
    /// `uplink` entries (or matches one of their patterns), each address can be a MoA, and
    /// `auto` has an IMS to ask.
    func validate(uplinks: [String], domainPrefixes: [IPPrefix], hasIMS: Bool) throws(ConfigError) {
        for entry in entries {
            func fail(_ message: String) -> ConfigError { ConfigError(line: entry.line, key: "public-address", message: message) }
            if let name = entry.uplink, !uplinks.contains(where: { UplinkSelection.matches($0, name) }) {
                throw fail("\(name) is not an uplink of this node (uplinks: \(uplinks.joined(separator: ", ")))")
            }
            if let address = entry.address, let problem = Self.unusable(address, domainPrefixes: domainPrefixes) {
                throw fail("\(address) cannot be a public address: \(problem)")
            }
            if entry.address == nil && !hasIMS {
                throw fail("auto asks the IMS, but there is no [ims] section: give the address instead")
            }
        }
    }

    /// What an answer to "which address does the IMS see" for the local MoA `local` means.
    public enum Answer: Sendable, Equatable {
        /// Publish this address for `local` (`local` itself: no NAT on the way).
        case seen(IPAddress)
        /// No IMS server of `local`'s family to ask: publish `local` as it is.
        case noServer
        /// The IMS does not answer the question (BIND, Knot): publish `local`, and say
        /// that behind NAT `public-address` must be given.
        case notAnswered
        /// The IMS named an address peers cannot send to (another family, unspecified,
        /// loopback, link-local, multicast, a home address): publish `local`, and say why
        /// the answer was not taken (a misconfigured IMS or a broken NAT in front of it
        /// must not make the node announce, say, its peers' HoA prefix or `::1`).
        case unusable(IPAddress, reason: String)
        /// Nobody answered (no IMS reachable): ask again later; nothing is published for
        /// the family meanwhile.
        case failed
    }

    /// Judges the IMS's `answer` (nil: it has no such record; `failed`: no answer at all)
    /// for `local`; `hasServer`: whether some IMS server is of `local`'s family.
    public static func judge(_ answer: IPAddress?, failed: Bool, for local: IPAddress, hasServer: Bool,
                             domainPrefixes: [IPPrefix]) -> Answer {
        if failed { return .failed }
        guard let answer else { return hasServer ? .notAnswered : .noServer }
        guard answer.family == local.family else {
            return .unusable(answer, reason: "an \(answer.family) address for an \(local.family) one")
        }
        if let problem = unusable(answer, domainPrefixes: domainPrefixes) { return .unusable(answer, reason: problem) }
        return .seen(answer)
    }

    /// Why `address` cannot be what peers send to, or nil.
    static func unusable(_ address: IPAddress, domainPrefixes: [IPPrefix]) -> String? {
        if domainPrefixes.contains(where: { $0.contains(address) }) {
            return "it lies in a domain-prefix (home addresses are not mobile addresses)"
        }
        switch address {
        case .v4(let a):
            let first = UInt8(truncatingIfNeeded: a.value >> 24), second = UInt8(truncatingIfNeeded: a.value >> 16)
            if a.value == 0 || first == 0 { return "unspecified" }
            if first == 127 { return "loopback" }
            if first >= 224 { return "multicast or reserved" }
            if first == 169 && second == 254 { return "link-local" }
        case .v6(let a):
            if a.high == 0 && (a.low == 0 || a.low == 1) { return a.low == 0 ? "unspecified" : "loopback" }
            if a.high >> 56 == 0xFF { return "multicast" }
            if a.high >> 54 == 0x3FA { return "link-local" }
            if a.high == 0 && a.low >> 32 == 0xFFFF { return "an IPv4-mapped address (write the IPv4 address)" }
        }
        return nil
    }
}
