#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATTestSupport
import Testing

/// The libvirt hook (Tools/hooks/libvirt-qemu) with a real matd: the lab's VM node plays the
/// guest, Interop/hook/standin-virsh plays libvirt (the domain's state; a guest agent that
/// answers only while the guest runs and runs guest-exec commands for real). An incoming
/// migration in libvirt's order: `started begin` while the guest is paused, then it runs
/// (migrated). The hook's readdress moves the VM's uplink to site B (Tools/testbed move b:
/// the new network's address, as a DHCP client there would take it), and only then runs
/// matctl rebind, whose report must carry site B's MoA, registered. Interop/hook/run covers
/// the hook's other paths (boot, no opt-in, bad settings, failures) without root.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root for network namespaces (CI runs as root)"))
struct LibvirtHookLabTests {
    @Test func incomingMigrationReaddressesThenRebinds() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS()
        try lab.startMatd("vm", config: try lab.writeIMSConfig("vm"))
        #expect(lab.waitForLog("vm", "registered "))

        let standin = lab.path("libvirt"), domain = lab.path("libvirt/domains/guest1"), bin = lab.path("bin")
        try FileManager.default.createDirectory(atPath: "\(domain)/guest", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: "\(bin)/virsh",
            withDestinationPath: LabPaths.repositoryRoot.appendingPathComponent("Interop/hook/standin-virsh").path)
        let uuid = "5b0c6a43-8f7e-4c59-a1d2-3e4f5a6b7c8d"
        try write("\(domain)/uuid", uuid)
        try write("\(domain)/state", "paused (migrating)")
        // matctl "in the guest": the lab's matctl with the VM node's control socket.
        try write(lab.path("guest-matctl"), """
            #!/bin/sh
            exec ip netns exec \(lab.namespace("vm")) \(LabPaths.matctl) "$@" --socket \(lab.socket("vm"))
            """, executable: true)
        let log = lab.path("hook.log"), config = lab.path("libvirt-hook.conf")
        try write(config, """
            readdress = LAB=\(lab.name) \(LabPaths.testbed) move b
            matctl = \(lab.path("guest-matctl"))
            wait-running = 60
            poll-interval = 0.2
            log = \(log)
            """)
        let xml = "<domain type='kvm'><name>guest1</name><uuid>\(uuid)</uuid><metadata>"
            + "<mat:hook xmlns:mat='urn:mat:libvirt-hook:1'/></metadata></domain>"
        let hook = LabPaths.repositoryRoot.appendingPathComponent("Tools/hooks/libvirt-qemu").path
        // libvirt's call: the XML on stdin, a bare environment.
        let call = try runCommand(
            ["env", "-i", "PATH=\(bin):/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "STANDIN_DIR=\(standin)",
             "sh", "-c", "printf '%s' \"$1\" | \"$2\" --config \"$3\" guest1 started begin -", "sh", xml, hook, config],
            timeout: 10)
        #expect(call.succeeded && call.stdout.isEmpty, "\(call.summary)")

        // The memory copy: the worker only watches the state.
        #expect(poll(seconds: 10, every: 0.1) { contents(log).contains("domain state: paused (migrating)") }, "\(contents(log))")
        usleep(1_000_000)
        #expect(!contents("\(standin)/events").contains("qemu-agent-command"), "\(contents("\(standin)/events"))")

        try write("\(domain)/state", "running (migrated)")
        #expect(poll(seconds: 60, every: 0.1) { contents(log).contains("done, exit status") }, "\(contents(log))")
        let lines = contents(log).split(separator: "\n").map(String.init)
        let rebind = lines.first { $0.contains("matctl rebind exited") } ?? ""
        #expect(rebind.contains("matctl rebind exited 0"), "\(contents(log))")
        #expect(rebind.contains("203.0.113.10") && !rebind.contains("192.0.2.10"), "\(rebind)")
        #expect(lines.contains { $0.contains("readdress exited 0") }, "\(contents(log))")
        #expect(lines.last?.contains("done, exit status 0") == true, "\(contents(log))")
        // The VM really is on site B now, and matd took the new MoA.
        #expect(try lab.exec("vm", "ip", "-4", "-o", "addr", "show", "dev", "eth0").contains("203.0.113.10/"))
    }

    private func write(_ path: String, _ text: String, executable: Bool = false) throws {
        try (text + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        if executable { chmod(path, 0o755) }
    }

    private func contents(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }
}
