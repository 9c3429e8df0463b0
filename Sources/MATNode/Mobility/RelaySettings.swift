import MATConfig
import MATPacket
import MATSignaling

/// The `[relay]` section (docs/config.md, "`[relay]`"): this node relays for nodes behind
/// NATs that cannot reach each other directly, or it names the relay it registers with
/// (docs/datapath.md, "Behind NAT"). Both go over `encap-port`.
public struct RelaySettings: Sendable, Equatable {
    /// `serve = on`: this node forwards relayed packets between the nodes registered with
    /// it. It needs a public address on `encap-port`.
    public var serves: Bool
    /// `address`: the relay this node registers with (its `encap-port`); nil: none.
    public var address: IPAddress?
    /// `client-key = HOA KEY`: keys a relay checks the registrations of these HoAs with
    /// instead of the key their IMS TXT record publishes (pinned, as a `[peer]`'s).
    public var clientKeys: [IPAddress: VerifyingKey]
    /// `public-key`: the relay's public key (`matd relay-key` on the relay) its answers must be
    /// signed with; nil: not pinned, its answers are taken unsigned (with a warning).
    public var key: VerifyingKey?
    /// Line of the section header.
    public var line: Int

    /// Reads a `[relay]` section.
    static func read(_ section: ConfigFile.Section) throws(ConfigError) -> RelaySettings {
        var settings = RelaySettings(serves: false, address: nil, clientKeys: [:], line: section.line)
        for entry in section.entries {
            switch entry.key {
            case "serve":
                guard ["on", "off"].contains(entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not on or off")
                }
                settings.serves = entry.value == "on"
            case "address":
                guard settings.address == nil else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "set twice in [relay] (one relay)")
                }
                guard let address = IPAddress(entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "\(entry.value) is not an IPv4 or IPv6 address")
                }
                settings.address = address
            case "public-key":
                guard settings.key == nil else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "set twice in [relay] (one relay)")
                }
                guard let key = VerifyingKey(base64: entry.value) else {
                    throw ConfigError(line: entry.line, key: entry.key,
                                      message: "\(entry.value) is not a base64 Ed25519 public key (32 bytes; matd relay-key prints it)")
                }
                settings.key = key
            case "client-key":
                let words = entry.value.split(whereSeparator: \.isWhitespace)
                guard words.count == 2, let hoa = IPAddress(String(words[0])),
                      let key = VerifyingKey(base64: String(words[1])) else {
                    throw ConfigError(line: entry.line, key: entry.key,
                                      message: "\(entry.value) is not HOME-ADDRESS BASE64-KEY (an Ed25519 public key, 32 bytes)")
                }
                guard settings.clientKeys.updateValue(key, forKey: hoa) == nil else {
                    throw ConfigError(line: entry.line, key: entry.key, message: "a second key for \(hoa)")
                }
            default:
                throw ConfigError(line: entry.line, key: entry.key, message: "unknown key in [relay]")
            }
        }
        guard settings.serves || settings.address != nil else {
            throw ConfigError(line: section.line, key: nil, message: "[relay] has neither serve = on nor an address")
        }
        guard !(settings.serves && settings.address != nil) else {
            throw ConfigError(line: section.line, key: "address",
                              message: "a relay (serve = on) does not register with another relay")
        }
        guard settings.key == nil || settings.address != nil else {
            throw ConfigError(line: section.line, key: "public-key", message: "only a node with a relay address pins the relay's key")
        }
        guard settings.serves || settings.clientKeys.isEmpty else {
            throw ConfigError(line: section.line, key: "client-key", message: "only a relay (serve = on) checks client keys")
        }
        return settings
    }

    /// Checks the section against the rest of the configuration.
    func validate(homeAddresses: [IPAddress], encapsulation: EncapSetting) throws(ConfigError) {
        guard encapsulation != .off else {
            throw ConfigError(line: line, key: nil, message: "[relay] needs udp-encapsulation auto or always (it is off)")
        }
        if let address, homeAddresses.contains(address) {
            throw ConfigError(line: line, key: "address", message: "\(address) is this node's own home address")
        }
        // The registrations and relayed packets go from the encapsulation socket of the
        // relay's family, which exists only for the families of the node's HoAs.
        if let address, !homeAddresses.contains(where: { $0.family == address.family }) {
            throw ConfigError(line: line, key: "address",
                              message: "\(address) is \(address.family) and this node has no \(address.family) home address "
                                  + "(no encapsulation socket of that family to reach it from)")
        }
    }
}
