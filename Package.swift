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
        .library(name: "MATDNS", targets: ["MATDNS"]),
        .library(name: "MATLinux", targets: ["MATLinux"]),
        .executable(name: "mat-bench", targets: ["MATBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.0"..<"5.0.0"),
    ],
    targets: [
        // Pure logic, no I/O: packet views, checksums, translation, mapping table.
        .target(name: "MATPacket", swiftSettings: hotPathSettings),
        // Pure logic, no I/O: DNS messages, names, UPDATE, TSIG.
        .target(name: "MATDNS", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),

        // Thin Linux layer: TUN with offloads, netlink through libnl-route and libmnl.
        .systemLibrary(name: "CNetlink", pkgConfig: "libnl-route-3.0",
                       providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]),
        .systemLibrary(name: "CMnl", pkgConfig: "libmnl", providers: [.apt(["libmnl-dev"])]),
        .target(name: "CShim"),
        .target(name: "MATLinux", dependencies: ["MATPacket", "CNetlink", "CMnl", "CShim"]),

        // The daemon's parts wired: configuration, engine, mobility state, control.
        .target(name: "MATNode", dependencies: ["MATPacket", "MATLinux"]),

        // C reference of the translation loop and table lookup, used only by the benchmark.
        .target(name: "CReference", cSettings: [.unsafeFlags(["-O2"])]),
        .executableTarget(
            name: "MATBench",
            dependencies: ["MATPacket", "CReference"],
            swiftSettings: hotPathSettings
        ),

        .testTarget(name: "MATPacketTests", dependencies: ["MATPacket"]),
        .testTarget(name: "MATDNSTests", dependencies: ["MATDNS"]),
        .testTarget(name: "MATLinuxTests", dependencies: ["MATLinux", "MATPacket"]),
        .testTarget(name: "MATNodeTests", dependencies: ["MATNode", "MATPacket"]),
    ],
    swiftLanguageModes: [.v6]
)
