import Foundation

extension NATLab {
    /// The VM in site N as 192.0.2.80 and the CN in site M as 192.0.2.90, each behind a
    /// masquerade that chooses every source port at random (Tools/lab/nat-site random), so
    /// hole punching cannot get through: only a relay can join them. The lab is closed
    /// when a step fails.
    static func randomPortPair() throws -> NATLab {
        let nat = try NATLab()
        do {
            try nat.addCNSite()
            try nat.moveVM(host: 80)
            try nat.moveCNBehindNAT(host: 90)
            try nat.randomPorts("nat")
            try nat.randomPorts("nat2")
        } catch {
            nat.close()
            throw error
        }
        return nat
    }
}
