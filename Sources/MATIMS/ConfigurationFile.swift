#if canImport(Glibc)
import Glibc
#endif
import MATConfig
import MATDNS
import MATIMSCore
import MATPacket

extension IMSConfiguration {
    /// Reads and checks a configuration file; key files are read relative to its folder.
    public static func load(path: String) throws(ConfigError) -> IMSConfiguration {
        let text = try readTextFile(path, line: 0, key: nil)
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        return try parse(text, baseDirectory: directory)
    }

    /// Parses configuration text (see docs/ims.md for the keys).
    public static func parse(_ text: String, baseDirectory: String = ".",
                             readFile: (String) throws(ConfigError) -> String = { path throws(ConfigError) in
                                 try IMSConfiguration.readKeyFile(path)
                             }) throws(ConfigError) -> IMSConfiguration {
        let file = try ConfigFile(parsing: text)
        var config = IMSConfiguration()
        var sawServer = false
        var adminKeyLines: [(DNSName, Int)] = []
        var transferKeyLines: [(DNSName, Int)] = []
        var keyNames: [DNSName: Int] = [:]
        var exemptions: [IMSPrefix]? = nil
        for section in file.sections {
            switch section.name {
            case "server":
                guard !sawServer else {
                    throw ConfigError(line: section.line, key: nil, message: "[server] may appear only once")
                }
                sawServer = true
                for entry in section.entries {
                    switch entry.key {
                    case "listen":
                        guard let endpoint = IPEndpoint(entry.value, defaultPort: 53) else {
                            throw entry.error("not an address[:port] (use [v6]:port for IPv6): \(entry.value)")
                        }
                        config.listen.append(endpoint)
                    case "state-directory":
                        config.stateDirectory = entry.value
                    case "metrics-listen":
                        guard let endpoint = IPEndpoint(entry.value, defaultPort: nil), endpoint.port > 0 else {
                            throw entry.error("\(entry.value) is not ADDRESS:PORT like 127.0.0.1:9475 or [::1]:9475")
                        }
                        config.metricsListen = endpoint
                    case "journal-sync":
                        guard let mode = JournalSync(rawValue: entry.value) else {
                            throw entry.error("must be fsync or write, not \(entry.value)")
                        }
                        config.journalSync = mode
                    case "journal-compact-bytes":
                        config.journalCompactBytes = try entry.integer(in: 4096...(1 << 40))
                    case "max-tcp-connections":
                        config.maxTCPConnections = try entry.integer(in: 1...10000)
                    case "max-tcp-connections-per-source":
                        config.maxTCPConnectionsPerSource = try entry.integer(in: 1...10000)
                    case "tcp-idle-timeout":
                        config.tcpIdleTimeout = try entry.integer(in: 1...3600)
                    case "rrl-responses-per-second":
                        config.rateLimit.responsesPerSecond = try entry.integer(in: 0...1_000_000)
                    case "rrl-slip":
                        config.rateLimit.slip = try entry.integer(in: 0...10)
                    case "rrl-window":
                        config.rateLimit.window = try entry.integer(in: 1...3600)
                    case "rrl-exempt":
                        // Repeatable; the first one replaces the loopback default, `none` empties it.
                        var list = exemptions ?? []
                        if entry.value != "none" {
                            guard let prefix = IMSPrefix(entry.value) else {
                                throw entry.error("expected an address prefix or `none`, not \(entry.value)")
                            }
                            list.append(prefix)
                        }
                        exemptions = list
                    case "max-udp-size":
                        config.maxUDPSize = try entry.integer(in: 512...65535)
                    case "udp-threads":
                        config.udpThreads = try entry.integer(in: 0...64)
                    case "key-file":
                        let path = entry.value.hasPrefix("/") ? entry.value : baseDirectory + "/" + entry.value
                        let keyText: String
                        do {
                            keyText = try readFile(path)
                        } catch {
                            throw ConfigError(line: entry.line, key: entry.key, message: error.message)
                        }
                        let keys: [TSIGKey]
                        do {
                            keys = try TSIGKeyFile.parse(keyText)
                        } catch {
                            throw entry.error("\(path): \(describe(error))")
                        }
                        guard !keys.isEmpty else { throw entry.error("\(path) holds no key") }
                        for key in keys {
                            if let earlier = keyNames[key.name] {
                                throw entry.error("key \(key.name) is already defined (line \(earlier))")
                            }
                            keyNames[key.name] = entry.line
                            config.keys.append(key)
                        }
                    default:
                        throw entry.error("unknown key in [server]")
                    }
                }
            case "zone":
                var zone: ZoneConfiguration?
                var nameServers: [DNSName] = []
                var pending: [ConfigFile.Entry] = []
                for entry in section.entries {
                    if entry.key == "name" {
                        guard zone == nil else { throw entry.error("a [zone] has one name") }
                        zone = ZoneConfiguration(name: try entry.name())
                    } else {
                        pending.append(entry)
                    }
                }
                guard var zone else {
                    throw ConfigError(line: section.line, key: "name", message: "[zone] needs a name")
                }
                for entry in pending {
                    switch entry.key {
                    case "ns":
                        nameServers.append(try entry.name())
                    case "glue":
                        let parts = entry.value.split(separator: " ", omittingEmptySubsequences: true)
                        guard parts.count == 2, let address = IPAddress(String(parts[1])) else {
                            throw entry.error("expected NAME ADDRESS, e.g. ns.mat.example. 192.0.2.53")
                        }
                        let name: DNSName
                        do { name = try DNSName(String(parts[0])) } catch { throw entry.error("bad name \(parts[0])") }
                        guard name.isSubdomain(of: zone.name) else { throw entry.error("\(name) is not inside the zone") }
                        zone.glue.append((name, address))
                    case "mailbox":
                        zone.mailbox = try entry.name()
                    case "apex-ttl":
                        zone.apexTTL = UInt32(try entry.integer(in: 0...604800))
                    case "negative-ttl":
                        zone.negativeTTL = UInt32(try entry.integer(in: 0...86400))
                    case "default-ttl":
                        zone.defaultTTL = UInt32(try entry.integer(in: 0...86400))
                    case "refresh":
                        zone.refresh = UInt32(try entry.integer(in: 1...2_419_200))
                    case "retry":
                        zone.retry = UInt32(try entry.integer(in: 1...2_419_200))
                    case "expire":
                        zone.expire = UInt32(try entry.integer(in: 1...2_419_200))
                    case "admin-key":
                        let name = try entry.name()
                        zone.adminKeys.insert(name.lowercased())
                        adminKeyLines.append((name, entry.line))
                    case "node-types":
                        let words = entry.value.split(separator: " ", omittingEmptySubsequences: true)
                        if words.count == 1, words[0].uppercased() == "ANY" {
                            zone.nodeTypes = nil
                        } else {
                            var types = Set<DNSType>()
                            for word in words {
                                guard let type = DNSType(mnemonic: String(word)), !type.isMetaType,
                                      type != .soa, type != .ns else {
                                    throw entry.error("\(word) is not a record type a node may write")
                                }
                                types.insert(type)
                            }
                            zone.nodeTypes = types
                        }
                    case "notify":
                        guard let endpoint = IPEndpoint(entry.value, defaultPort: 53) else {
                            throw entry.error("not an address[:port]: \(entry.value)")
                        }
                        zone.notify.append(endpoint)
                    case "allow-transfer":
                        let value = entry.value
                        if value == "any" {
                            zone.allowTransfer.append(.any)
                        } else if value.hasPrefix("key ") {
                            let nameText = String(value.dropFirst(4)).trimmingSpaces()
                            let name: DNSName
                            do { name = try DNSName(nameText) } catch { throw entry.error("bad key name \(nameText)") }
                            zone.allowTransfer.append(.key(name.lowercased()))
                            transferKeyLines.append((name, entry.line))
                        } else if let prefix = IMSPrefix(value) {
                            zone.allowTransfer.append(.prefix(prefix))
                        } else {
                            throw entry.error("expected an address prefix, `key NAME` or `any`")
                        }
                    case "ixfr-history":
                        zone.ixfrHistory = try entry.integer(in: 0...1_000_000)
                    case "max-addresses-per-name":
                        zone.updateLimits.addressesPerName = try entry.integer(in: 1...10000)
                    case "max-records-per-name":
                        zone.updateLimits.recordsPerName = try entry.integer(in: 1...10000)
                    case "max-names-per-key":
                        zone.updateLimits.namesPerKey = try entry.integer(in: 1...1_000_000)
                    default:
                        throw entry.error("unknown key in [zone]")
                    }
                }
                if !nameServers.isEmpty { zone.nameServers = nameServers }
                guard !config.zones.contains(where: { $0.name == zone.name }) else {
                    throw ConfigError(line: section.line, key: "name", message: "zone \(zone.name) appears twice")
                }
                config.zones.append(zone)
            default:
                throw ConfigError(line: section.line, key: nil, message: "unknown section [\(section.name)]")
            }
        }
        guard sawServer else { throw ConfigError(line: 0, key: nil, message: "missing [server] section") }
        if let exemptions { config.rateLimit.exempt = exemptions }
        guard !config.listen.isEmpty else {
            throw ConfigError(line: 0, key: "listen", message: "[server] needs at least one listen address")
        }
        guard !config.zones.isEmpty else { throw ConfigError(line: 0, key: nil, message: "no [zone] configured") }
        for (name, line) in adminKeyLines + transferKeyLines where keyNames[name.lowercased()] == nil {
            throw ConfigError(line: line, key: nil, message: "key \(name) is not in any key-file")
        }
        for (index, zone) in config.zones.enumerated() {
            for other in config.zones[(index + 1)...] where other.name.isSubdomain(of: zone.name) || zone.name.isSubdomain(of: other.name) {
                throw ConfigError(line: 0, key: nil, message: "zones \(zone.name) and \(other.name) overlap")
            }
        }
        return config
    }

    /// Reads a key file, refusing one that others than its owner can read: it holds
    /// shared secrets.
    public static func readKeyFile(_ path: String) throws(ConfigError) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw ConfigError(line: 0, key: nil, message: "cannot read \(path): \(errnoText())")
        }
        guard info.st_mode & 0o077 == 0 else {
            let mode = String(info.st_mode & 0o777, radix: 8)
            throw ConfigError(line: 0, key: nil,
                                 message: "\(path) is readable by group or others (mode \(mode)); chmod 600 it")
        }
        return try readTextFile(path, line: 0, key: nil)
    }

    static func readTextFile(_ path: String, line: Int, key: String?) throws(ConfigError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ConfigError(line: line, key: key, message: "cannot read \(path): \(errnoText())") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ConfigError(line: line, key: key, message: "cannot read \(path): \(errnoText())")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            guard bytes.count <= 16 << 20 else {
                throw ConfigError(line: line, key: key, message: "\(path) is larger than 16 MiB")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

private func describe(_ error: TSIGKeyError) -> String {
    switch error {
    case .badSecret: "a secret is not valid base64"
    case .unknownAlgorithm(let a): "unknown algorithm \(a) (use hmac-sha256)"
    case .badName(let n): "bad key name \(n)"
    case .incompleteKey(let n): "key \(n) lacks an algorithm or a secret"
    case .syntax(let line): "syntax error at line \(line)"
    }
}

func errnoText(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}

extension ConfigFile.Entry {
    func error(_ message: String) -> ConfigError {
        ConfigError(line: line, key: key, message: message)
    }

    func integer(in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let v = Int(value), range.contains(v) else {
            throw error("must be an integer in \(range.lowerBound)...\(range.upperBound), not \(value)")
        }
        return v
    }

    func name() throws(ConfigError) -> DNSName {
        do { return try DNSName(value) } catch { throw self.error("not a domain name: \(value)") }
    }
}

extension String {
    func trimmingSpaces() -> String { String(Substring(self).trimmingWhitespace()) }
}

extension DNSType {
    /// The type for a mnemonic (`AAAA`) or `TYPEnnn`, case-insensitive.
    public init?(mnemonic: String) {
        let word = mnemonic.uppercased()
        let known: [DNSType] = [.a, .ns, .cname, .soa, .ptr, .mx, .txt, .aaaa, .srv, .any]
        if let match = known.first(where: { $0.description == word }) {
            self = match
        } else if word.hasPrefix("TYPE"), let value = UInt16(word.dropFirst(4)) {
            self.init(value)
        } else {
            return nil
        }
    }
}
