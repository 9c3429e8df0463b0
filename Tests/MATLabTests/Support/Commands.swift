#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATTestSupport

/// Root-only lab tests run in CI (as root) and must not skip there: in CI a non-root run
/// is enabled, and fails, instead of silently skipping.
let labTestsEnabled = getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil

struct LabError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What a finished command left behind.
struct CommandResult: Sendable {
    var arguments: [String]
    var status: Int32
    /// True when the command ended by a signal (`status` is then the signal number).
    var signalled: Bool
    var stdout: String
    var stderr: String

    var succeeded: Bool { !signalled && status == 0 }

    var summary: String {
        let how = signalled ? "signal \(status)" : "status \(status)"
        return "`\(arguments.joined(separator: " "))` ended with \(how)\n--- stdout\n\(stdout)--- stderr\n\(stderr)"
    }
}

/// A process started in the background. Its output goes to files (never a pipe, so a
/// chatty process can not block on a full pipe the test is not reading).
final class Spawned: @unchecked Sendable {
    let arguments: [String]
    private let process = Process()
    private let outputPath: String
    private let errorPath: String

    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        self.arguments = arguments
        let directory = FileManager.default.temporaryDirectory.path
        let stem = "\(directory)/matlab-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        outputPath = stem + ".out"
        errorPath = stem + ".err"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        unlink(outputPath)
        unlink(errorPath)
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var stdout: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

    func signal(_ number: Int32) {
        if process.isRunning { kill(process.processIdentifier, number) }
    }

    /// Waits up to `timeout` seconds; a process still running then is killed and the
    /// result says so (status SIGKILL, signalled).
    @discardableResult
    func wait(timeout: Double) -> CommandResult {
        _ = poll(seconds: timeout, every: 0.005) { !process.isRunning }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        return CommandResult(arguments: arguments, status: process.terminationStatus,
                             signalled: process.terminationReason == .uncaughtSignal,
                             stdout: stdout, stderr: stderr)
    }

    /// Waits until `predicate` holds for the standard output or error, or the process ends.
    func waitForOutput(timeout: Double, _ predicate: (String) -> Bool) -> Bool {
        poll(seconds: timeout, every: 0.01) { predicate(stdout + stderr) || !process.isRunning }
            && predicate(stdout + stderr)
    }
}

/// Runs a command to completion (killed after `timeout` seconds).
@discardableResult
func runCommand(_ arguments: [String], timeout: Double = 120, environment: [String: String] = [:]) throws -> CommandResult {
    try Spawned(arguments, environment: environment).wait(timeout: timeout)
}

/// Runs a command that must succeed; returns its standard output.
@discardableResult
func check(_ arguments: [String], timeout: Double = 120, environment: [String: String] = [:]) throws -> String {
    let result = try runCommand(arguments, timeout: timeout, environment: environment)
    guard result.succeeded else { throw LabError(result.summary) }
    return result.stdout
}

/// Where the repository and the freshly built binaries are.
enum LabPaths {
    /// The package root: the nearest directory above this file holding Package.swift.
    static let repositoryRoot: URL = {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return directory
            }
            directory.deleteLastPathComponent()
        }
        fatalError("MATLabTests: no Package.swift above \(#filePath)")
    }()

    static var testbed: String { repositoryRoot.appendingPathComponent("Tools/testbed").path }
    static var labPeer: String { repositoryRoot.appendingPathComponent("Tools/lab/labpeer.py").path }
    static var handoff: String { repositoryRoot.appendingPathComponent("Tools/lab/handoff.py").path }
    static var signalFlood: String { repositoryRoot.appendingPathComponent("Tools/lab/signal-flood.py").path }
    static var forgedIMS: String { repositoryRoot.appendingPathComponent("Tools/lab/forged-ims.py").path }
    static var udpTrace: String { repositoryRoot.appendingPathComponent("Tools/lab/udp-trace.py").path }

    /// The build's bin directory: where the test bundle itself lives (SwiftPM puts the test
    /// bundle next to the executables it built with it). `MATLAB_BIN_DIR` overrides.
    static let binDirectory: String = {
        var candidates: [String] = []
        if let forced = ProcessInfo.processInfo.environment["MATLAB_BIN_DIR"] { candidates.append(forced) }
        for start in [CommandLine.arguments.first, Bundle.main.executablePath,
                      try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")] {
            guard let start, start.hasPrefix("/") else { continue }
            // The bundle may be a file (Linux) or a directory tree (…/X.xctest/Contents/MacOS/X).
            var directory = URL(fileURLWithPath: start).standardizedFileURL.deletingLastPathComponent()
            for _ in 0..<4 where directory.path != "/" {
                candidates.append(directory.path)
                directory.deleteLastPathComponent()
            }
        }
        for candidate in candidates {
            let matd = candidate + "/matd"
            let matctl = candidate + "/matctl"
            if FileManager.default.isExecutableFile(atPath: matd) && FileManager.default.isExecutableFile(atPath: matctl) {
                return candidate
            }
        }
        // Last resort: the default debug build of this checkout.
        return repositoryRoot.appendingPathComponent(".build/debug").path
    }()

    static var matd: String { binDirectory + "/matd" }
    static var matctl: String { binDirectory + "/matctl" }
    static var matIMS: String { binDirectory + "/mat-ims" }
    static var matDelay: String { binDirectory + "/mat-delay" }
}

/// The lines of `a` missing from `b` and those of `b` missing from `a`, for failure messages.
func lineDifference(_ a: String, _ b: String) -> String {
    let left = a.split(separator: "\n", omittingEmptySubsequences: false)
    let right = b.split(separator: "\n", omittingEmptySubsequences: false)
    let onlyLeft = left.filter { !right.contains($0) }.map { "- \($0)" }
    let onlyRight = right.filter { !left.contains($0) }.map { "+ \($0)" }
    let lines = onlyLeft + onlyRight
    return lines.isEmpty ? "(same lines, different order)" : lines.joined(separator: "\n")
}
