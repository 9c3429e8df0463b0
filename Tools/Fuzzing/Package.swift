// swift-tools-version: 6.0
// libFuzzer targets over the root package's pure modules. A package of its own so the
// fuzzing flags (and their build products) never touch the root build: build and run it
// with Tools/fuzz, which passes the sanitizer flags (docs/fuzzing.md).
import PackageDescription

/// The root package, by path. SwiftPM names a path dependency after its folder, which is
/// whatever the clone is called, so the name is worked out rather than written down.
let rootPath = "../.."
let rootName = Context.packageDirectory.split(separator: "/").dropLast(2).last.map(String.init) ?? "main"

/// Each fuzz target is an executable without a `main` of its own: `-parse-as-library`
/// keeps Swift from emitting one, and the libFuzzer runtime supplies it.
func fuzzTarget(_ name: String, _ product: String, also extra: [Target.Dependency] = []) -> Target {
    .executableTarget(
        name: name,
        dependencies: [.product(name: product, package: rootName)] + extra,
        swiftSettings: [.unsafeFlags(["-parse-as-library"])]
    )
}

let package = Package(
    name: "MATFuzzing",
    dependencies: [
        .package(path: rootPath),
        // For FuzzSignaling, which re-signs inputs with its test key; the root's version range.
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.0"..<"5.0.0"),
    ],
    targets: [
        fuzzTarget("FuzzPacket", "MATPacket"),
        fuzzTarget("FuzzMapping", "MATPacket"),
        fuzzTarget("FuzzDNS", "MATDNS"),
        fuzzTarget("FuzzIMS", "MATIMSCore", also: [.product(name: "MATDNS", package: rootName),
                                               .product(name: "MATPacket", package: rootName)]),
        fuzzTarget("FuzzSignaling", "MATSignaling", also: [.product(name: "Crypto", package: "swift-crypto")]),
    ],
    swiftLanguageModes: [.v6]
)
