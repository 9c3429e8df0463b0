import MATDNS
import MATIMSClient
import MATLinux
import MATPacket

/// The TSIG keys of the `[ims]` section, checked against the node's HoAs.
///
/// Every server setup docs/ims.md describes (mat-ims, BIND's `grant * self *`, Knot's
/// per-key ACLs) lets a node key write exactly one HoA name: the one it is named after.
/// So a dual-stack node needs two keys, one per HoA. A HoA without its key would be
/// REFUSED at every registration for as long as matd runs, and a key named after no HoA
/// signs nothing the server accepts; both are configuration errors, reported when matd
/// starts (and by `matd check-config`, and on SIGHUP, which then keeps the old section),
/// not discovered at the first refusal.
public enum NodeKeys {
    /// Reads every key file of `ims` (each mode 0600, one or more `key` clauses) and
    /// returns the keys in the order of `homeAddresses`, one per HoA. No key files: no
    /// keys (lookups only). Throws when a file cannot be read or parsed, when a HoA has no
    /// key named after its name, when a key is named after none of them, or when two keys
    /// share a name.
    public static func load(_ ims: NodeConfig.IMSSettings, homeAddresses: [IPAddress]) throws -> [TSIGKey] {
        var found: [(key: TSIGKey, file: String)] = []
        for path in ims.keyFiles {
            let data = try SecretFile.read(path, what: "key file")
            let keys: [TSIGKey]
            do { keys = try TSIGKeyFile.parse(String(decoding: data, as: UTF8.self)) } catch {
                throw SystemError("key file \(path)", detail: "\(error)")
            }
            guard !keys.isEmpty else { throw SystemError("key file \(path)", detail: "holds no key") }
            found += keys.map { ($0, path) }
        }
        guard !found.isEmpty else { return [] }
        return try match(found, ims: ims, homeAddresses: homeAddresses)
    }

    /// The keys of `found` in the order of `homeAddresses`, or the error `load` describes.
    static func match(_ found: [(key: TSIGKey, file: String)], ims: NodeConfig.IMSSettings,
                      homeAddresses: [IPAddress]) throws -> [TSIGKey] {
        let names: MappingNames
        do { names = try MappingNames(zone: ims.zone) } catch {
            throw SystemError("[ims] zone \(ims.zone)", detail: "too long for mapping names")
        }
        var seen: Set<DNSName> = []
        for (key, file) in found where !seen.insert(key.name).inserted {
            throw SystemError("key file \(file)", detail: "key \(key.name) is given twice")
        }
        let wanted = homeAddresses.map { (hoa: $0, name: names.hoaName(for: $0)) }
        for (key, file) in found where !wanted.contains(where: { $0.name == key.name }) {
            let expected = wanted.map { "\($0.name) for \($0.hoa)" }.joined(separator: ", ")
            throw SystemError("key file \(file)", detail: "key \(key.name) is named after none of this node's home "
                + "addresses, so the IMS would refuse every update signed with it; a node key must be named after "
                + "its HoA's name: \(expected)")
        }
        return try wanted.map { hoa, name in
            guard let key = found.first(where: { $0.key.name == name })?.key else {
                throw SystemError("[ims] key-file (line \(ims.line))", detail: "no key for home address \(hoa): "
                    + "the IMS lets a node key write only the name it is named after, so every home address "
                    + "needs a key named \(name) (make one with `mat-ims keygen --hoa \(hoa) --zone \(ims.zone)`, "
                    + "give it to the IMS, and add it to a key file here)")
            }
            return key
        }
    }
}
