#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import Testing

/// A named network namespace made for one test and deleted after it, so root-only tests
/// never touch the host's own interfaces.
struct LabNamespace: ~Copyable {
    let name: String

    init() throws {
        name = "mat-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try run("ip", "netns", "add", name)
    }

    deinit { _ = try? run("ip", "netns", "del", name) }

    /// Runs `body` on a fresh thread that has entered the namespace, so sockets and TUN
    /// devices it opens live there; the thread ends with the body.
    func enter<R: Sendable>(_ body: @escaping @Sendable () throws -> R) throws -> R {
        let path = "/run/netns/\(name)"
        let box = ResultBox<R>()
        let thread = Thread {
            box.set(Result {
                try NetworkNamespace.enter(path: path)
                return try body()
            })
        }
        thread.start()
        return try box.wait().get()
    }

    /// Output of `ip ARGS` inside the namespace.
    func ip(_ arguments: String...) throws -> String {
        try run(["ip", "-n", name] + arguments)
    }
}

struct LabError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

final class ResultBox<R: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<R, any Error>?

    func set(_ value: Result<R, any Error>) {
        condition.lock()
        result = value
        condition.signal()
        condition.unlock()
    }

    func wait() -> Result<R, any Error> {
        condition.lock()
        defer { condition.unlock() }
        while result == nil { condition.wait() }
        return result!
    }
}

@discardableResult
func run(_ arguments: String...) throws -> String { try run(arguments) }

@discardableResult
func run(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw LabError("\(arguments.joined(separator: " ")) failed: \(output)")
    }
    return output
}

/// Root-only tests run in CI (as root) and must not skip there; elsewhere they are
/// skipped with a reason when not root.
let isRoot = getuid() == 0
let mustRunRootTests = ProcessInfo.processInfo.environment["CI"] != nil
