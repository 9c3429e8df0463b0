#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import MATSignaling
import MATSystem

/// A relay's Ed25519 key (`<state-directory>/relay.key`, one line of base64 as the node's
/// signing key, mode 0600), which signs its answers to registrations (``RelayAnswer``).
/// Nodes pin its public half (`[relay] public-key`, which `matd relay-key` prints), so that an
/// answer from anyone else is refused (docs/security.md, N4). A key of its own, not the
/// node key: `matctl rotate-key` on the relay leaves the nodes' pins valid. Made at the
/// relay's first start, or by `matd relay-key`, whichever comes first.
public enum RelayKeyFile {
    /// Where `config`'s relay keeps its key.
    public static func path(_ config: NodeConfig) -> String { config.stateDirectory + "/relay.key" }

    /// The relay's key, made (with the state directory, mode 0700) when there is none.
    static func load(_ config: NodeConfig) throws(SystemError) -> SigningKey {
        let path = path(config)
        do {
            try FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            return try SigningKeyFile.load(path, createIfMissing: true)
        } catch let error as SystemError {
            throw error
        } catch {
            throw SystemError("relay key \(path)", detail: "\(error)")
        }
    }

    /// The public half of the relay's key (base64, as `[relay] public-key` takes it), the key made
    /// first when there is none: `matd relay-key`.
    public static func publicKey(_ config: NodeConfig) throws(SystemError) -> String {
        guard config.relay?.serves == true else {
            throw SystemError("relay key", detail: "this configuration is no relay's ([relay] serve = on)")
        }
        return try load(config).publicKey.base64
    }
}
