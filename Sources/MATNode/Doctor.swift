import Foundation
import MATDNS
import MATIMSClient
import MATLinux
import MATPacket

/// One thing `matctl doctor` checked.
public struct DoctorFinding: Sendable, Equatable {
    public enum Verdict: String, Sendable {
        case ok, warning, problem
    }

    public var verdict: Verdict
    /// What was checked, in a word or two.
    public var check: String
    public var detail: String
    /// What to do about a warning or problem.
    public var fix: String?
}

/// `matctl doctor` (docs/operations.md): what an operator checks before trusting a node.
/// The configuration and key files, whether matd runs and has a MoA per HoA family, how
/// IPv6 leaves, the host's forward policy (and its input policy, with the kernel fast
/// path), the IMS (reachable, its clock within the TSIG fudge, this node's registrations
/// there and current), and whether peers answer alerts.
/// Reads only: nothing on the host or in the IMS changes.
public enum Doctor {
    /// How far the IMS's clock may be from this host's before updates are refused (TSIG fudge).
    static let fudgeSeconds: Int64 = 300

    public static func examine(configPath: String, socket: String?) -> [DoctorFinding] {
        var findings: [DoctorFinding] = []
        func note(_ verdict: DoctorFinding.Verdict, _ check: String, _ detail: String, fix: String? = nil) {
            findings.append(DoctorFinding(verdict: verdict, check: check, detail: detail, fix: fix))
        }
        guard let data = FileManager.default.contents(atPath: configPath) else {
            note(.problem, "config", "cannot read \(configPath)", fix: "pass matd's configuration with --config")
            return findings
        }
        let config: NodeConfig
        do {
            config = try NodeConfig(parsing: String(decoding: data, as: UTF8.self))
        } catch {
            note(.problem, "config", "\(configPath): \(error)", fix: "correct that line (docs/config.md)")
            return findings
        }
        note(.ok, "config", "\(configPath): home \(config.homeAddresses.map(\.description).joined(separator: ", ")), "
             + "\(config.peers.count) static peer(s)")

        let signingKey = config.signingKeyFile ?? config.stateDirectory + "/signing.key"
        if FileManager.default.fileExists(atPath: signingKey) {
            do {
                _ = try SigningKeyFile.load(signingKey, createIfMissing: false)
                note(.ok, "signing key", signingKey)
            } catch {
                note(.problem, "signing key", "\(signingKey): \(error)", fix: "chmod 600 \(signingKey), or remove it for a new one")
            }
        } else {
            note(config.signingKeyFile == nil ? .warning : .problem, "signing key", "\(signingKey) does not exist",
                 fix: config.signingKeyFile == nil ? "matd creates it at its first start" : "set signing-key to the key's file")
        }

        var keys: [TSIGKey] = []
        if let ims = config.ims {
            do {
                keys = try NodeKeys.load(ims, homeAddresses: config.homeAddresses)
                if keys.isEmpty {
                    // Its lookups go unsigned, so no answer can be checked (docs/security.md, D3).
                    let pinned = config.peers.filter { $0.publicKey != nil }.count
                    note(.warning, "ims keys", "no key-file: matd does not register, and learns no peer from the IMS "
                         + "whose key it does not hold; it reaches only the \(pinned) [peer](s) with public-key",
                         fix: "mat-ims keygen --hoa <each home address> makes a file with a key per HoA; set key-file (docs/config.md)")
                } else {
                    note(.ok, "ims keys", keys.map(\.name.description).joined(separator: ", "))
                }
            } catch {
                note(.problem, "ims keys", "\(error)",
                     fix: "mat-ims keygen --hoa <each home address> makes a file with a key per HoA (docs/config.md)")
            }
        }

        let socketPath = socket ?? config.controlSocket
        var status: StatusReport?
        do {
            status = try sendControlRequest(ControlRequest(command: .status), to: socketPath).status
        } catch {
            note(.problem, "matd", "no answer at \(socketPath): \(error)",
                 fix: "start it (systemctl start matd) and read why it stopped (journalctl -u matd)")
        }
        if let status {
            note(.ok, "matd", "up \(status.uptimeSeconds) s on \(status.tunDevice), "
                 + "mobile \(status.mobileAddresses.isEmpty ? "none" : status.mobileAddresses.joined(separator: ", "))")
            for home in config.homeAddresses {
                let family = home.family
                if !status.mobileAddresses.contains(where: { IPAddress($0)?.family == family }) {
                    note(.problem, "mobile address", "no \(family) address on \(config.uplinks.joined(separator: ", ")) for HoA \(home)",
                         fix: "give an uplink a global \(family) address (ip addr), or check the uplink names")
                }
            }
            if let outbound = status.ipv6Outbound, outbound != "none" {
                note(.ok, "ipv6 outbound", outbound == "sysctl" ? "per-device force_forwarding" : "nftables fwd (kernel before 6.17)")
            }
        }

        let ipv6Path = status?.ipv6Outbound.flatMap(IPv6OutboundPath.init(rawValue:)) ?? .sysctl
        // Legacy iptables (x_tables) is read apart from nftables, once for both checks.
        let legacy = LegacyFirewall.read()
        for (family, error) in legacy.unreadable.sorted(by: { $0.key < $1.key }) {
            note(.warning, "legacy iptables", "a \(family) filter table is loaded and could not be read: \(error)",
                 fix: "run matctl doctor as root, or read it with \(family == "ip" ? "iptables" : "ip6tables")-legacy-save")
        }
        do {
            let dropping = try ForwardFirewall.findings(tun: config.tunName, ipv6Path: ipv6Path, nftables: try Nftables(),
                                                        legacy: legacy)
            for finding in dropping {
                note(.problem, "forward policy", "\(finding.place) drops what \(config.tunName) forwards",
                     fix: finding.fix)
            }
            if dropping.isEmpty { note(.ok, "forward policy", "no forward chain drops \(config.tunName)'s packets") }
        } catch {
            note(.warning, "forward policy", "cannot read the nftables ruleset: \(error)", fix: "run matctl doctor as root")
        }

        // The kernel fast path's inbound packets come from the uplink: an input chain that
        // drops them keeps matd's inbound on the engine (slower, not broken): a warning.
        let fastPath = status?.kernelFastPath.map { $0.hasPrefix("on") } ?? KernelFastPath.enabled(setting: config.kernelFastPath)
        if fastPath {
            do {
                let dropping = try FastPathFirewall.findings(uplinks: config.uplinks, nftables: try Nftables(), legacy: legacy)
                for finding in dropping {
                    note(.warning, "input policy", "\(finding.place) drops the kernel fast "
                         + "path's packets (mark \(FastPathFirewall.mark)): inbound HoA traffic takes the engine "
                         + "until a rule accepts them (matd reads the firewall every "
                         + "\(HostFirewallWatch.interval / 1_000) s)", fix: finding.fix)
                }
                if dropping.isEmpty { note(.ok, "input policy", "no input chain drops the kernel fast path's packets") }
            } catch {
                note(.warning, "input policy", "cannot read the nftables ruleset: \(error)", fix: "run matctl doctor as root")
            }
        }

        if let ims = config.ims {
            examineIMS(ims, config: config, keys: keys, status: status, note: note)
        }

        if status != nil {
            do {
                let peers = try sendControlRequest(ControlRequest(command: .peers), to: socketPath).peers ?? []
                let silent = peers.filter { $0.alert == "unanswered" }
                for peer in silent {
                    note(.warning, "peer", "\(peer.homeAddress) did not acknowledge the last alert",
                         fix: "UDP \(config.signalingPort) must pass between the MoAs both ways; is matd running there?")
                }
                if silent.isEmpty { note(.ok, "peers", "\(peers.count) peer(s), none silent") }
            } catch {
                note(.warning, "peers", "matd did not list its peers: \(error)")
            }
        }
        return findings
    }

    private static func examineIMS(_ ims: NodeConfig.IMSSettings, config: NodeConfig, keys: [TSIGKey],
                                   status: StatusReport?,
                                   note: (DoctorFinding.Verdict, String, String, String?) -> Void) {
        let names: MappingNames
        do {
            names = try MappingNames(zone: ims.zone)
        } catch {
            return note(.problem, "ims", "zone \(ims.zone): \(error)", "set zone to the mapping zone's name")
        }
        let client = IMSClient(configuration: IMSClientConfiguration(names: names, servers: ims.servers, keys: keys,
                                                                     recordTTL: ims.recordTTL))
        if let key = keys.first {
            do {
                let (offset, server) = try client.clockOffset(using: key)
                let text = "\(server)'s clock is \(offset) s from this host's"
                if abs(offset) > fudgeSeconds {
                    note(.problem, "ims clock", text, "synchronise both clocks (chrony or systemd-timesyncd): TSIG allows \(fudgeSeconds) s")
                } else {
                    note(abs(offset) > 30 ? .warning : .ok, "ims clock", text, abs(offset) > 30 ? "synchronise the clocks" : nil)
                }
            } catch {
                note(.problem, "ims", "a signed query with \(key.name) was not answered as expected: \(error)",
                     "check that the IMS serves \(ims.zone) and knows the key (UDP and TCP 53 to it)")
            }
        }
        for home in config.homeAddresses {
            do {
                let answer = try client.lookup(hoa: home, allowCached: false)
                let registered = answer.moas.map(\.description)
                let current = status?.mobileAddresses.filter { IPAddress($0)?.family == home.family } ?? []
                if status == nil || Set(registered) == Set(current) {
                    note(.ok, "registration", "\(home) -> \(registered.joined(separator: ", ")) in the IMS", nil)
                } else {
                    note(.problem, "registration", "the IMS has \(home) -> \(registered.joined(separator: ", ")); matd is at "
                         + current.joined(separator: ", "), "see matd's log for the registration's error (journalctl -u matd)")
                }
            } catch {
                note(keys.isEmpty ? .warning : .problem, "registration", "\(home): \(error)",
                     keys.isEmpty ? "without key-file matd does not register" : "see matd's log (journalctl -u matd)")
            }
        }
    }
}
