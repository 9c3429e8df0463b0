#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// `matctl doctor` on a node of the lab: all ok on a healthy one; a forward chain that
/// drops is a problem whose printed fix, run as printed, clears it; a stopped matd is a
/// problem. Exit status 1 on a problem, 0 otherwise.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct DoctorLabTests {
    @Test func doctorFindsWhatIsWrongAndItsFixesWork() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        let vm = Addr.node("vm")
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        func doctor() throws -> CommandResult {
            try runCommand(lab.inNode("vm", [LabPaths.matctl, "doctor", "--config", lab.path("vm-ims.conf"),
                                             "--socket", lab.socket("vm")]), timeout: 60)
        }

        let healthy = try doctor()
        #expect(healthy.status == 0, "\(healthy.summary)")
        for line in ["ok       config: ", "ok       signing key: ", "ok       ims keys: ", "ok       matd: up ",
                     "ok       forward policy: ", "ok       ims clock: ",
                     "ok       registration: \(vm.home4) -> \(vm.mobile4) in the IMS", "ok       peers: 1 peer(s), none silent",
                     "doctor: no problem found"] {
            #expect(healthy.stdout.contains(line), "missing \(line) in\n\(healthy.stdout)")
        }

        // Without key-file the node registers nothing and, its lookups unsigned, learns
        // only the peers whose keys it holds: doctor says both, as a warning.
        let keyless = try String(contentsOfFile: lab.path("vm-ims.conf"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("key-file") }
            .joined(separator: "\n")
        try keyless.write(toFile: lab.path("vm-keyless.conf"), atomically: true, encoding: .utf8)
        let unkeyed = try runCommand(lab.inNode("vm", [LabPaths.matctl, "doctor", "--config", lab.path("vm-keyless.conf"),
                                                       "--socket", lab.socket("vm")]), timeout: 60)
        #expect(unkeyed.status == 0, "\(unkeyed.summary)")
        #expect(unkeyed.stdout.contains("warning  ims keys: no key-file: matd does not register, and learns no peer from "
                                        + "the IMS whose key it does not hold; it reaches only the 0 [peer](s) with public-key"),
                "\(unkeyed.stdout)")

        // A host firewall that drops forwarded packets by default, as Docker's does.
        try lab.exec("vm", "nft", "add table inet fw")
        try lab.exec("vm", "nft", "add chain inet fw forward { type filter hook forward priority 0; policy drop; }")
        let blocked = try doctor()
        #expect(blocked.status == 1, "\(blocked.summary)")
        #expect(blocked.stdout.contains("PROBLEM  forward policy: inet fw forward drops what mat0 forwards"), "\(blocked.stdout)")
        let fix = try #require(blocked.stdout.split(separator: "\n").first { $0.contains("fix: nft insert rule inet fw forward") })
        let command = String(fix.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces)
        try lab.exec("vm", "sh", "-c", command)
        let fixed = try doctor()
        #expect(fixed.status == 0 && fixed.stdout.contains("ok       forward policy: "), "\(fixed.summary)")

        try lab.stopMatd("vm")
        let stopped = try doctor()
        #expect(stopped.status == 1 && stopped.stdout.contains("PROBLEM  matd: no answer at \(lab.socket("vm"))"),
                "\(stopped.summary)")
        // A configuration that does not parse stops at the first problem, with its line.
        try "[node]\nhome-address = nonsense\n".write(toFile: lab.path("broken.conf"), atomically: true, encoding: .utf8)
        let broken = try runCommand([LabPaths.matctl, "doctor", "--config", lab.path("broken.conf")])
        #expect(broken.status == 1 && broken.stdout.contains("PROBLEM  config: ") && broken.stdout.contains("line 2"),
                "\(broken.summary)")
    }
}
