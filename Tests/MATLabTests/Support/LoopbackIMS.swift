import Foundation
import MATTestSupport

/// A mat-ims configuration for a server on loopback alone, outside any lab: one zone, a
/// random port, its state in a temporary directory (removed by ``remove()``).
struct LoopbackIMSConfig {
    let directory: TemporaryDirectory
    let port: UInt16
    /// The configuration file, for `mat-ims run --config`.
    var path: String { directory.file("ims.conf") }

    init(prefix: String) throws {
        directory = try TemporaryDirectory(prefix: prefix)
        port = UInt16(20_000 + Int.random(in: 0..<20_000))
        try """
            [server]
            listen = 127.0.0.1:\(port)
            state-directory = \(directory.file("state"))
            [zone]
            name = mat.example.
            ns = ns.mat.example.
            glue = ns.mat.example. 192.0.2.132

            """.write(toFile: directory.file("ims.conf"), atomically: true, encoding: .utf8)
    }

    func remove() { directory.remove() }
}
