import Foundation
import Testing

/// The libFuzzer targets (Tools/Fuzzing) live in a package of their own, built only by
/// `Tools/fuzz` with sanitizer flags, so `swift build` never compiles them: a change to a
/// module's API could break one and stay unseen until the fuzz smoke stage, the last of
/// `Tools/test`. This type-checks each target against the modules this very test build
/// compiled, which takes about a second per target. No root.
@Suite struct FuzzTargetsTests {
    static let targets = ["FuzzPacket", "FuzzMapping", "FuzzDNS", "FuzzIMS", "FuzzSignaling"]

    @Test(arguments: targets)
    func theFuzzTargetTypeChecksAgainstThisBuild(_ target: String) throws {
        let root = LabPaths.repositoryRoot.path
        let sourceDirectory = "\(root)/Tools/Fuzzing/Sources/\(target)"
        let sources = try FileManager.default.contentsOfDirectory(atPath: sourceDirectory)
            .filter { $0.hasSuffix(".swift") }.sorted().map { "\(sourceDirectory)/\($0)" }
        #expect(!sources.isEmpty, "no sources in \(sourceDirectory)")
        let build = LabPaths.binDirectory
        let modules = "\(build)/Modules"
        #expect(FileManager.default.fileExists(atPath: "\(modules)/MATPacket.swiftmodule"),
                "no MATPacket module in \(modules): where did this build put its modules?")
        // The C modules the Swift ones import are found through the module maps SwiftPM wrote.
        let moduleMaps = try FileManager.default.contentsOfDirectory(atPath: build)
            .filter { $0.hasSuffix(".build") }.sorted()
            .map { "\(build)/\($0)/module.modulemap" }
            .filter { FileManager.default.fileExists(atPath: $0) }
        let arguments = ["swiftc", "-typecheck", "-parse-as-library", "-swift-version", "6", "-I", modules]
            + moduleMaps.flatMap { ["-Xcc", "-fmodule-map-file=\($0)"] } + sources
        let result = try runCommand(arguments, timeout: 300)
        #expect(result.succeeded, "\(target) no longer compiles against the package:\n\(result.summary)")
    }
}
