#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// mat-ims takes new key files on SIGHUP: a node whose key it did not know is refused,
/// then registers once the key file is in the configuration and mat-ims was told to reload,
/// with no restart (the zone keeps what the other node registered). A configuration that
/// no longer loads keeps the keys in use.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct IMSReloadLabTests {
    @Test func aNewNodesKeyWorksAfterSIGHUPWithoutARestart() throws {
        let lab = try Lab()
        defer { lab.close() }
        let ims = try lab.startIMS()
        let (vm, cn) = (Addr.node("vm"), Addr.node("cn"))
        try lab.startMatd("vm", config: try lab.writeIMSConfig("vm"))
        #expect(lab.waitForLog("vm", "registered \(vm.home4)"), "\(lab.matdLog("vm"))")

        // The CN gets a key of its own that mat-ims has never seen.
        let key = try check([LabPaths.matIMS, "keygen", "20.100.51.198.hoa.mat.example."], timeout: 10)
        try key.write(toFile: lab.path("keys/cn-new.key"), atomically: true, encoding: .utf8)
        chmod(lab.path("keys/cn-new.key"), 0o600)
        let cnConfig = try String(contentsOfFile: try lab.writeIMSConfig("cn"), encoding: .utf8)
            .replacingOccurrences(of: lab.path("keys/cn.key"), with: lab.path("keys/cn-new.key"))
        try cnConfig.write(toFile: lab.path("cn-ims.conf"), atomically: true, encoding: .utf8)
        try lab.startMatd("cn", config: lab.path("cn-ims.conf"))
        #expect(lab.waitForLog("cn", "registering \(cn.home4) failed"), "\(lab.matdLog("cn"))")

        // A reload that cannot load keeps the keys in use.
        let imsConfig = try String(contentsOfFile: lab.path("ims.conf"), encoding: .utf8)
        try (imsConfig + "key-file = \(lab.path("keys/missing.key"))\n").write(toFile: lab.path("ims.conf"), atomically: true, encoding: .utf8)
        ims.signal(SIGHUP)
        #expect(ims.waitForOutput(timeout: 10) { $0.contains("reload: ") && $0.contains("keeping the 2 keys in use") },
                "\(ims.stderr)")

        // The CN's new key file replaces its old one; SIGHUP; the CN registers at its next try.
        try imsConfig.replacingOccurrences(of: lab.path("keys/cn.key"), with: lab.path("keys/cn-new.key"))
            .write(toFile: lab.path("ims.conf"), atomically: true, encoding: .utf8)
        ims.signal(SIGHUP)
        #expect(ims.waitForOutput(timeout: 10) { $0.contains("mat-ims: reload: 2 keys (0 new, 0 removed)") }, "\(ims.stderr)")
        try lab.signalMatd("cn", SIGHUP)
        #expect(lab.waitForLog("cn", "registered \(cn.home4)", timeout: 30), "\(lab.matdLog("cn"))")
        #expect(ims.isRunning)
        // The VM's registration from before the reload is still served: the zone stayed.
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
    }
}
