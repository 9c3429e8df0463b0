import MATConfig
import MATDNS
import MATIMSClient
import MATPacket
import MATSignaling

/// matd's configuration, validated. See docs/config.md for the file format.
public struct NodeConfig: Sendable, Equatable {
    /// A peer whose mapping is fixed in the file rather than learned from the IMS.
    public struct StaticPeer: Sendable, Equatable {
        public var homeAddress: IPAddress
        public var mobileAddresses: [IPAddress]
        /// The peer's Ed25519 public key (base64), pinned: its mobility alerts are checked
        /// against it instead of the key the IMS publishes.
        public var publicKey: VerifyingKey?
        /// The relay the peer registers with (`relay`), which must be this node's own
        /// (`[relay] address`): its signaling goes there when direct goes unanswered, and
        /// its traffic in UDP at once (docs/config.md, "`[peer]`").
        public var relay: IPAddress?
        public var line: Int
    }

    /// The node's home addresses: at most one per family.
    public var homeAddresses: [IPAddress]
    /// The `uplink` entries as written: interface names or fnmatch patterns (`eth*`).
    public var uplinkEntries: [String]
    /// The uplink interfaces now, in preference order: `uplinkEntries` with each pattern
    /// replaced by the present interfaces it matches (`UplinkSelection.resolve`). Read
    /// afresh on every use, so a NIC plugged in later that matches a pattern is an uplink.
    public var uplinks: [String] {
        UplinkSelection.resolve(uplinkEntries, present: isPatterned ? UplinkSelection.presentInterfaces() : [],
                                excluding: notMatchedByPatterns)
    }
    /// Whether interface `name` is an uplink (named by an entry or matching a pattern);
    /// true also for one that is gone, so its removal counts as an uplink's.
    public func isUplink(_ name: String) -> Bool {
        uplinkEntries.contains { $0 == name || (!notMatchedByPatterns.contains(name) && UplinkSelection.matches($0, name)) }
    }
    /// Never an uplink by pattern: the TUN device (it carries the HoAs) and loopback.
    private var notMatchedByPatterns: Set<String> { [tunName, "lo"] }
    private var isPatterned: Bool { uplinkEntries.contains { UplinkSelection.isPattern($0) } }
    /// The mobility domain: traffic to these prefixes goes through the engine.
    public var domainPrefixes: [IPPrefix]
    /// Name of the TUN device the engine owns.
    public var tunName: String
    /// UDP port of the signaling protocol.
    public var signalingPort: UInt16
    /// Path of the control socket (mode 0600).
    public var controlSocket: String
    /// Where the Prometheus metrics endpoint listens (`metrics-listen`); nil: none.
    public var metricsListen: IPEndpoint?
    /// Directory for state that must survive restarts (sequence numbers).
    public var stateDirectory: String
    /// Routing table that holds the domain-prefix routes into the TUN device.
    public var routingTable: UInt32
    /// Priority of the policy rules that send this host's own domain traffic to that table.
    public var rulePriority: UInt32
    /// File with this node's Ed25519 signing key for mobility alerts; nil: the state
    /// directory's `signing.key`, created on first start.
    public var signingKeyFile: String?
    /// How IPv6 packets from the engine leave (`ipv6-forwarding`): the per-device sysctl,
    /// nftables, or whichever the kernel has (`auto`, the default).
    public var ipv6Forwarding: IPv6ForwardingSetting
    /// The public addresses published in place of private MoAs behind 1:1 NAT
    /// (`public-address`, see ``PublicAddresses``).
    public var publicAddresses: PublicAddresses
    /// When peers' traffic goes in UDP (`udp-encapsulation`, see ``EncapPolicy``).
    public var udpEncapsulation: EncapSetting
    /// UDP port of the encapsulation, the same on every node (`encap-port`).
    public var encapPort: UInt16
    /// Whether nftables translates settled mappings in the kernel (`kernel-fast-path`,
    /// docs/datapath.md "Kernel fast path"); `MATD_KERNEL_FAST_PATH` overrides it.
    public var kernelFastPath: Bool
    /// What translates IPv4 on the kernel fast path: nftables, or tc/BPF programs
    /// (`kernel-fast-path = bpf`, docs/datapath.md "The BPF datapath").
    public var kernelFastPathDatapath: FastPathDatapath
    /// Seconds between keepalives to a peer reached in UDP (`encap-keepalive`): shorter
    /// than the NAT's UDP timeout. A peer forgets a node's UDP path four of them after the
    /// last one, so the nodes must agree, like on `encap-port`.
    public var encapKeepalive: UInt64
    /// Seconds between probes, while a peer is reached in UDP, of whether the path now
    /// carries translated packets (`encap-reprobe`).
    public var encapReprobe: UInt64
    /// Seconds a learned peer's MoA counts as proven after the last word signed with the
    /// peer's key that came from it (`proof-lifetime`, F): past it, nothing from that MoA
    /// is taken as the peer's until it answers a probe (``ProofFreshness``).
    public var proofLifetime: UInt64
    /// The command run when the hypervisor announces this guest after a live migration
    /// (`on-notify-peers`): its words, the first an absolute path; the interface's name
    /// is appended. nil: the announcement only re-alerts the peers (``Readdresser``).
    public var onNotifyPeers: [String]?
    /// Peers with a fixed mapping.
    public var peers: [StaticPeer]
    /// Where mappings are registered and looked up; nil for static peers only.
    public var ims: IMSSettings?
    /// The `[relay]` section: this node relays, or the relay it registers with; nil: neither.
    public var relay: RelaySettings?

    /// The `[ims]` section: the mapping service in DNS.
    public struct IMSSettings: Sendable, Equatable {
        /// Servers to query and update, in order of preference (the primary first).
        public var servers: [DNSServerAddress]
        /// The mapping zone.
        public var zone: DNSName
        /// BIND-syntax files with this node's TSIG keys (mode 0600), one key per HoA, each
        /// named after its HoA's name; a file may hold several. Empty: lookups only.
        public var keyFiles: [String]
        /// TTL of the records this node publishes, seconds.
        public var recordTTL: UInt32
        /// How long a registration counts before it is written again, seconds.
        public var lifetime: UInt64
        /// Line of the section header, for errors found later (the key file).
        public var line: Int
    }

    /// Defaults for the optional keys.
    public static let defaultTunName = "mat0"
    public static let defaultSignalingPort: UInt16 = 7540
    public static let defaultEncapPort: UInt16 = 7541
    public static let defaultEncapKeepalive: UInt64 = 15
    public static let defaultEncapReprobe: UInt64 = 60
    public static let defaultProofLifetime: UInt64 = 40
    public static let defaultControlSocket = "/run/matd/control.sock"
    public static let defaultStateDirectory = "/var/lib/matd"
    public static let defaultRoutingTable: UInt32 = 7540
    public static let defaultRulePriority: UInt32 = 7540

    /// Parses and validates the text of a configuration file.
    public init(parsing text: String) throws(ConfigError) {
        let file = try ConfigFile(parsing: text)
        homeAddresses = []
        uplinkEntries = []
        domainPrefixes = []
        tunName = Self.defaultTunName
        signalingPort = Self.defaultSignalingPort
        controlSocket = Self.defaultControlSocket
        metricsListen = nil
        stateDirectory = Self.defaultStateDirectory
        routingTable = Self.defaultRoutingTable
        rulePriority = Self.defaultRulePriority
        signingKeyFile = nil
        ipv6Forwarding = .auto
        publicAddresses = PublicAddresses()
        udpEncapsulation = .auto
        encapPort = Self.defaultEncapPort
        kernelFastPath = KernelFastPath.defaultSetting
        kernelFastPathDatapath = .nftables
        encapKeepalive = Self.defaultEncapKeepalive
        encapReprobe = Self.defaultEncapReprobe
        proofLifetime = Self.defaultProofLifetime
        onNotifyPeers = nil
        peers = []
        ims = nil
        relay = nil
        var sawNode = false
        for section in file.sections {
            switch section.name {
            case "node":
                guard !sawNode else {
                    throw ConfigError(line: section.line, key: nil, message: "[node] appears twice")
                }
                sawNode = true
                try readNode(section)
            case "peer":
                peers.append(try Self.readPeer(section))
            case "ims":
                guard ims == nil else { throw ConfigError(line: section.line, key: nil, message: "[ims] appears twice") }
                ims = try Self.readIMS(section)
            case "relay":
                guard relay == nil else { throw ConfigError(line: section.line, key: nil, message: "[relay] appears twice") }
                relay = try RelaySettings.read(section)
            default:
                throw ConfigError(line: section.line, key: nil,
                                  message: "unknown section [\(section.name)] (known: [node], [peer], [ims], [relay])")
            }
        }
        guard sawNode else { throw ConfigError(line: 0, key: nil, message: "missing [node] section") }
        try validate(file)
    }

    private mutating func readNode(_ section: ConfigFile.Section) throws(ConfigError) {
        for entry in section.entries {
            switch entry.key {
            case "home-address":
                let address = try Self.address(entry)
                guard !homeAddresses.contains(where: { $0.family == address.family }) else {
                    throw ConfigError(line: entry.line, key: entry.key,
                                      message: "a second \(address.family) home address (one per family)")
                }
                homeAddresses.append(address)
            case "uplink":
                guard Self.isInterfaceName(entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key,
                                      message: "\(entry.value) is not an interface name (1-15 bytes, no / or spaces)")
                }
                guard !uplinkEntries.contains(entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) listed twice")
                }
                uplinkEntries.append(entry.value)
            case "domain-prefix":
                guard let prefix = IPPrefix(entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key,
                                      message: "\(entry.value) is not a prefix like 198.51.100.0/24 or 2001:db8::/48")
                }
                domainPrefixes.append(prefix)
            case "tun-name":
                guard Self.isInterfaceName(entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not an interface name")
                }
                tunName = entry.value
            case "signaling-port":
                guard let port = UInt16(entry.value), port > 0 else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not a port (1-65535)")
                }
                signalingPort = port
            case "control-socket":
                controlSocket = try Self.absolutePath(entry)
            case "metrics-listen":
                guard let endpoint = IPEndpoint(entry.value, defaultPort: nil), endpoint.port > 0 else {
                    throw ConfigError(line: entry.line, key: entry.key,
                                      message: "\(entry.value) is not ADDRESS:PORT like 127.0.0.1:9474 or [::1]:9474")
                }
                metricsListen = endpoint
            case "state-directory":
                stateDirectory = try Self.absolutePath(entry)
            case "routing-table":
                // 0 and 253-255 are the kernel's unspec, default, main and local tables.
                guard let table = UInt32(entry.value), table > 0, !(253...255).contains(table) else {
                    throw ConfigError(line: entry.line, key: entry.key,
                                      message: "\(entry.value) is not a table number (1-4294967295 except 253-255)")
                }
                routingTable = table
            case "rule-priority":
                // 0 is the local table's rule; at 32766 and above the main table has already answered.
                guard let priority = UInt32(entry.value), (1..<32_766).contains(priority) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not 1-32765")
                }
                rulePriority = priority
            case "signing-key":
                signingKeyFile = try Self.absolutePath(entry)
            case "ipv6-forwarding":
                guard let setting = IPv6ForwardingSetting(rawValue: entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not auto, sysctl or nftables")
                }
                ipv6Forwarding = setting
            case "on-notify-peers":
                let words = entry.value.split(whereSeparator: \.isWhitespace).map(String.init)
                guard let program = words.first, program.hasPrefix("/") else {
                    throw ConfigError(line: entry.line, key: entry.key,
                                      message: "\(entry.value) does not start with an absolute path (a command, no shell)")
                }
                onNotifyPeers = words
            case "udp-encapsulation":
                guard let setting = EncapSetting(rawValue: entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not auto, off or always")
                }
                udpEncapsulation = setting
            case "kernel-fast-path":
                guard ["on", "off", "bpf"].contains(entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not on, off or bpf")
                }
                kernelFastPath = entry.value != "off"
                kernelFastPathDatapath = entry.value == "bpf" ? .bpf : .nftables
            case "encap-port":
                guard let port = UInt16(entry.value), port > 0 else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not a port (1-65535)")
                }
                encapPort = port
            case "encap-keepalive":
                guard let seconds = UInt64(entry.value), (1...300).contains(seconds) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not 1-300 (seconds)")
                }
                encapKeepalive = seconds
            case "encap-reprobe":
                guard let seconds = UInt64(entry.value), (1...3_600).contains(seconds) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not 1-3600 (seconds)")
                }
                encapReprobe = seconds
            case "proof-lifetime":
                guard let seconds = UInt64(entry.value), (10...3_600).contains(seconds) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not 10-3600 (seconds)")
                }
                proofLifetime = seconds
            case "public-address":
                publicAddresses.entries.append(try PublicAddresses.parse(entry, existing: publicAddresses.entries))
            default:
                throw ConfigError(line: entry.line, key: entry.key, message: "unknown key in [node]")
            }
        }
    }

    private static func readPeer(_ section: ConfigFile.Section) throws(ConfigError) -> StaticPeer {
        var home: IPAddress?
        var mobile: [IPAddress] = []
        var publicKey: VerifyingKey?
        var relay: IPAddress?
        for entry in section.entries {
            switch entry.key {
            case "home-address":
                guard home == nil else { throw ConfigError(line: entry.line, key: entry.key, message: "set twice in one [peer]") }
                home = try address(entry)
            case "mobile-address":
                mobile.append(try address(entry))
            case "public-key":
                guard let key = VerifyingKey(base64: entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key,
                                      message: "\(entry.value) is not a base64 Ed25519 public key (32 bytes)")
                }
                publicKey = key
            case "relay":
                guard relay == nil else { throw ConfigError(line: entry.line, key: entry.key, message: "set twice in one [peer]") }
                relay = try address(entry)
            default:
                throw ConfigError(line: entry.line, key: entry.key, message: "unknown key in [peer]")
            }
        }
        guard let home else {
            throw ConfigError(line: section.line, key: "home-address", message: "missing in [peer]")
        }
        guard !mobile.isEmpty else {
            throw ConfigError(line: section.line, key: "mobile-address", message: "missing in [peer] for \(home)")
        }
        for moa in mobile where moa.family != home.family {
            throw ConfigError(line: section.line, key: "mobile-address",
                              message: "\(moa) is \(moa.family) but home address \(home) is \(home.family): "
                                  + "translation between address families is not supported")
        }
        return StaticPeer(homeAddress: home, mobileAddresses: mobile, publicKey: publicKey, relay: relay, line: section.line)
    }

    private static func readIMS(_ section: ConfigFile.Section) throws(ConfigError) -> IMSSettings {
        var settings = IMSSettings(servers: [], zone: .root, keyFiles: [], recordTTL: 10, lifetime: 300,
                                   line: section.line)
        var sawZone = false
        for entry in section.entries {
            switch entry.key {
            case "server":
                guard let server = DNSServerAddress(entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key,
                                      message: "\(entry.value) is not ADDRESS[:PORT] (IPv6 as [ADDRESS]:PORT)")
                }
                settings.servers.append(server)
            case "zone":
                guard let zone = try? DNSName(entry.value), !zone.isRoot else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not a DNS zone name")
                }
                settings.zone = zone
                sawZone = true
            case "key-file":
                settings.keyFiles.append(try absolutePath(entry))
            case "record-ttl":
                guard let ttl = UInt32(entry.value), (1...86_400).contains(ttl) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not 1-86400 seconds")
                }
                settings.recordTTL = ttl
            case "lifetime":
                guard let lifetime = UInt64(entry.value), (10...86_400).contains(lifetime) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not 10-86400 seconds")
                }
                settings.lifetime = lifetime
            default:
                throw ConfigError(line: entry.line, key: entry.key, message: "unknown key in [ims]")
            }
        }
        guard !settings.servers.isEmpty else {
            throw ConfigError(line: section.line, key: "server", message: "missing in [ims]")
        }
        guard sawZone else { throw ConfigError(line: section.line, key: "zone", message: "missing in [ims]") }
        return settings
    }

    private func validate(_ file: ConfigFile) throws(ConfigError) {
        let nodeLine = file.sections.first { $0.name == "node" }?.line ?? 0
        guard !homeAddresses.isEmpty else {
            throw ConfigError(line: nodeLine, key: "home-address", message: "missing in [node]")
        }
        guard !uplinkEntries.isEmpty else { throw ConfigError(line: nodeLine, key: "uplink", message: "missing in [node]") }
        guard !domainPrefixes.isEmpty else {
            throw ConfigError(line: nodeLine, key: "domain-prefix", message: "missing in [node]")
        }
        for home in homeAddresses where !domainPrefixes.contains(where: { $0.contains(home) }) {
            throw ConfigError(line: nodeLine, key: "home-address",
                              message: "\(home) lies outside every domain-prefix")
        }
        try publicAddresses.validate(uplinks: uplinkEntries, domainPrefixes: domainPrefixes, hasIMS: ims != nil)
        if udpEncapsulation != .off && encapPort == signalingPort {
            let line = file.sections.flatMap(\.entries).first { $0.key == "encap-port" }?.line ?? nodeLine
            throw ConfigError(line: line, key: "encap-port", message: "\(encapPort) is the signaling-port too: give each its own")
        }
        try relay?.validate(homeAddresses: homeAddresses, encapsulation: udpEncapsulation)
        var seen: Set<IPAddress> = Set(homeAddresses)
        for peer in peers {
            guard domainPrefixes.contains(where: { $0.contains(peer.homeAddress) }) else {
                throw ConfigError(line: peer.line, key: "home-address",
                                  message: "\(peer.homeAddress) lies outside every domain-prefix")
            }
            guard seen.insert(peer.homeAddress).inserted else {
                throw ConfigError(line: peer.line, key: "home-address",
                                  message: "\(peer.homeAddress) is already this node's or another peer's")
            }
            // A relay forwards only between the nodes registered with it, and this node
            // registers with one.
            if let named = peer.relay, named != relay?.address {
                let own = relay?.address.map { "[relay] address is \($0)" } ?? "this node has no [relay] address"
                throw ConfigError(line: peer.line, key: "relay",
                                  message: "\(named) is not this node's relay (\(own)): a peer is reached only through "
                                      + "the relay this node registers with")
            }
        }
    }

    private static func address(_ entry: ConfigFile.Entry) throws(ConfigError) -> IPAddress {
        guard let address = IPAddress(entry.value) else {
            throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not an IPv4 or IPv6 address")
        }
        return address
    }

    private static func absolutePath(_ entry: ConfigFile.Entry) throws(ConfigError) -> String {
        guard entry.value.hasPrefix("/") else {
            throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not an absolute path")
        }
        return entry.value
    }

    private static func isInterfaceName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count < 16 && name != "." && name != ".."
            && !name.contains { $0 == "/" || $0.isWhitespace || $0 == ":" }
    }
}

extension NodeConfig {
    /// What SIGHUP applies: this configuration with the run-time part (`[peer]` sections
    /// and the `[ims]` section, whose key file is read again) taken from `next`, and a
    /// note for each other setting that differs, which keeps its value until a restart.
    public func reloaded(from next: NodeConfig) -> (config: NodeConfig, notApplied: [String]) {
        var merged = self
        merged.peers = next.peers
        merged.ims = next.ims
        var notApplied: [String] = []
        func note<T: Equatable>(_ key: String, _ old: T, _ new: T) {
            if old != new { notApplied.append("\(key) changed; it takes effect when matd is restarted") }
        }
        note("home-address", homeAddresses, next.homeAddresses)
        note("uplink", uplinkEntries, next.uplinkEntries)
        note("domain-prefix", domainPrefixes, next.domainPrefixes)
        note("tun-name", tunName, next.tunName)
        note("signaling-port", signalingPort, next.signalingPort)
        note("control-socket", controlSocket, next.controlSocket)
        note("metrics-listen", metricsListen, next.metricsListen)
        note("state-directory", stateDirectory, next.stateDirectory)
        note("routing-table", routingTable, next.routingTable)
        note("rule-priority", rulePriority, next.rulePriority)
        note("signing-key", signingKeyFile, next.signingKeyFile)
        note("ipv6-forwarding", ipv6Forwarding, next.ipv6Forwarding)
        note("on-notify-peers", onNotifyPeers, next.onNotifyPeers)
        note("public-address", publicAddresses, next.publicAddresses)
        note("udp-encapsulation", udpEncapsulation, next.udpEncapsulation)
        note("encap-port", encapPort, next.encapPort)
        note("kernel-fast-path", "\(kernelFastPath) \(kernelFastPathDatapath)", "\(next.kernelFastPath) \(next.kernelFastPathDatapath)")
        note("encap-keepalive", encapKeepalive, next.encapKeepalive)
        note("encap-reprobe", encapReprobe, next.encapReprobe)
        note("proof-lifetime", proofLifetime, next.proofLifetime)
        note("[relay]", relay, next.relay)
        return (merged, notApplied)
    }
}
