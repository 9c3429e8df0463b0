// swift-tools-version: 6.0
import PackageDescription

/// Release builds of hot-path modules skip dynamic exclusivity checks: the packet path
/// touches no shared mutable state, and the check costs showed up in the benchmark.
let hotPathSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "MAT",
    products: [
        .library(name: "MATPacket", targets: ["MATPacket"]),
        .library(name: "MATWire", targets: ["MATWire"]),
        .library(name: "MATDNS", targets: ["MATDNS"]),
        .library(name: "MATLinux", targets: ["MATLinux"]),
        .library(name: "MATIMSCore", targets: ["MATIMSCore"]),
        .library(name: "MATIMS", targets: ["MATIMS"]),
        .library(name: "MATIMSClient", targets: ["MATIMSClient"]),
        .library(name: "MATSignaling", targets: ["MATSignaling"]),
        .executable(name: "matd", targets: ["matd"]),
        .executable(name: "matctl", targets: ["matctl"]),
        .executable(name: "mat-ims", targets: ["mat-ims"]),
        .executable(name: "mat-bench", targets: ["MATBench"]),
        .executable(name: "mat-delay", targets: ["mat-delay"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
    ],
    targets: [
        // Pure logic, no I/O: packet views, checksums, translation, mapping table.
        .target(name: "MATPacket", swiftSettings: hotPathSettings),
        // Pure, no I/O, no Foundation: the big-endian readers and writers every wire format shares.
        .target(name: "MATWire"),
        // Pure logic, no I/O: DNS messages, names, UPDATE, TSIG.
        .target(name: "MATDNS", dependencies: ["MATWire", .product(name: "Crypto", package: "swift-crypto")]),
        // Pure, no I/O: BPF instructions, an assembler with labels, the BPF datapath's tc
        // programs and the bpf(2) attribute bytes (no compiler at run time).
        .target(name: "MATBPF"),
        // Pure logic, no I/O: mobility signaling messages, Ed25519 authentication, replay and rate limits.
        .target(name: "MATSignaling", dependencies: ["MATPacket", "MATWire", .product(name: "Crypto", package: "swift-crypto")]),

        // Pure: the configuration file syntax matd and mat-ims share.
        .target(name: "MATConfig"),
        // The one logging path: levels, journald priorities.
        .target(name: "MATLog"),
        // Pure: the Prometheus text exposition writer matd and mat-ims share.
        .target(name: "MATMetrics"),
        // Command-line options the executables share (--log-level).
        .target(name: "MATCommandLine", dependencies: [
            "MATLog", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Thin Linux layer: TUN with offloads, netlink through libnl-route and libmnl.
        .systemLibrary(name: "CNetlink", pkgConfig: "libnl-route-3.0",
                       providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]),
        .systemLibrary(name: "CMnl", pkgConfig: "libmnl", providers: [.apt(["libmnl-dev"])]),
        .systemLibrary(name: "CNftables", pkgConfig: "libnftables", providers: [.apt(["libnftables-dev"])]),
        .target(name: "CShim"),
        // Typed system calls every daemon shares: clock, socket addresses, threads, wakeups.
        .target(name: "CSystem"),
        .target(name: "MATSystem", dependencies: ["MATPacket", "CSystem"]),
        .target(name: "MATLinux", dependencies: ["MATBPF", "MATPacket", "MATLog", "MATSystem", "CNetlink", "CMnl", "CNftables", "CShim"]),

        // The daemon's parts wired: configuration, engine, mobility state, control.
        .target(name: "MATNode", dependencies: ["MATConfig", "MATLog", "MATMetrics", "MATPacket", "MATLinux", "MATDNS", "MATIMSClient", "MATSignaling", "MATSystem", "MATWire"]),

        .executableTarget(name: "matd", dependencies: [
            "MATNode", "MATConfig", "MATLog", "MATCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "matctl", dependencies: [
            "MATNode", "MATConfig", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // The IMS client inside matd: registration, lookups, TTL cache, DNS transport.
        .target(name: "MATIMSClient", dependencies: ["MATDNS", "MATPacket", "MATSystem", "MATWire"]),

        // The mapping server's pure core, no sockets, files or clocks of its own: zone store,
        // UPDATE policy and limits, queries, transfers, response cache, rate limiting, expiry,
        // the journal's byte format. DNS messages in, DNS messages out.
        .target(name: "MATIMSCore", dependencies: ["MATDNS", "MATPacket", "MATWire"]),
        // The mapping server around it: DNS listeners, journal files, configuration files, metrics.
        .target(name: "MATIMS", dependencies: ["MATIMSCore", "MATConfig", "MATDNS", "MATLog", "MATMetrics", "MATPacket", "MATSystem", "MATWire"]),
        .executableTarget(name: "mat-ims", dependencies: [
            "MATIMS", "MATIMSCore", "MATLinux", "MATConfig", "MATLog", "MATMetrics", "MATCommandLine", "MATSystem", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // The lab's delay element (no netem on this kernel): a two-port forwarder that holds frames.
        .executableTarget(name: "mat-delay", dependencies: [
            "MATLog", "MATSystem", "MATWire", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // C reference of the translation loop and table lookup, used only by the benchmark.
        .target(name: "CReference", cSettings: [.unsafeFlags(["-O2"])]),
        .executableTarget(
            name: "MATBench",
            dependencies: ["MATPacket", "CReference"],
            swiftSettings: hotPathSettings
        ),

        .testTarget(name: "MATPacketTests", dependencies: ["MATPacket"]),
        .testTarget(name: "MATWireTests", dependencies: ["MATWire"]),
        .testTarget(name: "MATBPFTests", dependencies: ["MATBPF"]),
        .testTarget(name: "MATDNSTests", dependencies: ["MATDNS"]),
        .testTarget(name: "MATLogTests", dependencies: ["MATLog", "MATCommandLine"]),
        .testTarget(name: "MATSignalingTests", dependencies: ["MATSignaling", "MATPacket"]),
        // Helpers more than one test target uses.
        .target(name: "MATTestSupport", dependencies: ["MATSystem"], path: "Tests/MATTestSupport"),
        .testTarget(name: "MATLinuxTests", dependencies: ["MATLinux", "MATPacket", "MATTestSupport"]),
        .testTarget(name: "MATNodeTests", dependencies: ["MATNode", "MATPacket", "MATIMSClient", "MATConfig", "MATLinux", "MATSignaling", "MATTestSupport"]),
        .testTarget(name: "MATLabTests", dependencies: ["MATBPF", "MATNode", "MATLinux", "MATPacket", "MATTestSupport", "MATSignaling", "MATSystem", "matd", "matctl", "mat-ims", "mat-delay"]),
        .testTarget(name: "MATIMSTests", dependencies: ["MATIMS", "MATIMSCore", "MATDNS", "MATConfig", "MATPacket", "MATSystem", "MATTestSupport"]),
        .testTarget(name: "MATIMSClientTests", dependencies: ["MATIMSClient", "MATDNS", "MATPacket", "MATTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
