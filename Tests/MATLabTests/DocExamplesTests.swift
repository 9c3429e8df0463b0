#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATConfig
import MATNode
import MATPacket
import MATTestSupport
import Testing

/// The project rule "every example in README.md and docs/ works as written; docs match the
/// code", as a test: the configuration examples in the docs go through the real parsers,
/// every `matd`/`matctl`/`mat-ims` command line in them through the real binaries' `--help`,
/// the settings tables and their defaults against the parsers, the tests, scripts, event
/// kinds and package version the docs name against what exists, and the few commands whose
/// output the docs quote and that need no matd are run. No root, no namespace: a few
/// seconds. (docs/deploy.md's shell steps are run literally by `Interop/deploy/run`; docs/ims.md's
/// blocks marked `<!-- interop-test: NAME -->` by `Interop/ims/run`; README.md's "Running matd
/// by hand" by `ReadmeByHandLabTests`.)
@Suite struct DocExamplesTests {
    /// README.md and every docs/*.md, with their paths relative to the repository.
    static let documents: [(path: String, text: String)] = {
        let root = LabPaths.repositoryRoot
        let docs = (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("docs").path)) ?? []
        let paths = ["README.md"] + docs.filter { $0.hasSuffix(".md") }.sorted().map { "docs/\($0)" }
        return paths.compactMap { path in
            (try? String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)).map { (path, $0) }
        }
    }()

    static func document(_ path: String) throws -> String {
        guard let text = documents.first(where: { $0.path == path })?.text else { throw LabError("\(path) not found") }
        return text
    }

    // MARK: configuration examples

    @Test func everyMatdConfigurationExampleParses() throws {
        let examples = DocText.configurations(in: Self.documents).filter { $0.kind == .matd }
        // docs/config.md's NAT snippet and full example, docs/deploy.md's three nodes, at least.
        #expect(examples.count >= 5, "found only \(examples.map(\.place))")
        let base = try DocText.baseExample()
        var parsed = 0
        for example in examples {
            for variant in example.variants() {
                let text = variant.isFragment ? DocText.merge(variant.text, into: base) : variant.text
                do {
                    _ = try NodeConfig(parsing: text)
                    parsed += 1
                } catch {
                    Issue.record("\(example.place) (\(variant.label)): \(error)\n\(text)")
                }
            }
        }
        #expect(parsed >= 7)  // the NAT snippet's two commented-out alternatives as well
    }

    @Test func everyMatIMSConfigurationExamplePassesCheckConfig() throws {
        let examples = DocText.configurations(in: Self.documents).filter { $0.kind == .matIMS }
        // docs/ims.md's example and docs/deploy.md's mat-ims.conf, at least.
        #expect(examples.count >= 2, "found only \(examples.map(\.place))")
        for example in examples {
            let directory = try TemporaryDirectory(prefix: "matdoc")
            defer { directory.remove() }
            let configPath = directory.path + "/mat-ims.conf"
            try example.text.write(toFile: configPath, atomically: true, encoding: .utf8)
            // The key files it names, made with `mat-ims keygen` as docs/ims.md says: the
            // admin and transfer keys it names in the file whose name says so, a node key
            // in each other one.
            let named = DocText.keyNamesReferenced(in: example.text)
            for keyFile in DocText.values(of: "key-file", in: example.text) {
                guard !keyFile.hasPrefix("/") else {
                    Issue.record("\(example.place): key-file \(keyFile) is absolute; the test places only relative ones")
                    continue
                }
                let stem = (keyFile as NSString).lastPathComponent.replacingOccurrences(of: ".key", with: "")
                let mine = named.filter { $0.hasPrefix(stem + ".") }
                let keys = try check([LabPaths.matIMS, "keygen"] + (mine.isEmpty ? ["\(stem).mat.example."] : mine))
                let path = directory.path + "/" + keyFile
                try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                        withIntermediateDirectories: true)
                #expect(FileManager.default.createFile(atPath: path, contents: Data(keys.utf8),
                                                       attributes: [.posixPermissions: 0o600]))
            }
            let result = try runCommand([LabPaths.matIMS, "check-config", configPath], timeout: 60)
            #expect(result.succeeded && result.stdout.contains("OK"), "\(example.place):\n\(example.text)\n\(result.summary)")
        }
    }

    /// docs/config.md's key file example: the names `mat-ims keygen --hoa ... --hoa ...`
    /// prints (as the doc says it does), and matd's key check takes that file for the
    /// example's two HoAs.
    @Test func theDualStackKeyFileExampleIsWhatKeygenPrintsAndMatdTakes() throws {
        let config = try Self.document("docs/config.md")
        let documented = config.split(separator: "\n").filter { $0.hasPrefix("key \"") }.compactMap(DocText.keyName)
        #expect(documented.count == 2)
        let printed = try check([LabPaths.matIMS, "keygen", "--hoa", "198.51.100.10", "--hoa", "2001:db8:100::10",
                                 "--zone", "mat.example."])
        let names = printed.split(separator: "\n").filter { $0.hasPrefix("key \"") }.compactMap(DocText.keyName)
        #expect(names == documented)
        // The file as the example's `[ims]` names it, here in a temporary folder.
        let directory = try TemporaryDirectory(prefix: "matdoc")
        defer { directory.remove() }
        let keyPath = directory.path + "/node.key"
        #expect(FileManager.default.createFile(atPath: keyPath, contents: Data(printed.utf8),
                                               attributes: [.posixPermissions: 0o600]))
        let node = try NodeConfig(parsing: try DocText.baseExample())
        var ims = try #require(node.ims)
        #expect(ims.keyFiles == ["/etc/mat/node.key"])
        ims.keyFiles = [keyPath]
        #expect(try NodeKeys.load(ims, homeAddresses: node.homeAddresses).count == 2)
    }

    /// `mat-ims name ADDRESS ...   # EXPECTED` lines in the docs' shell blocks print what the
    /// comment says.
    @Test func quotedNameOutputIsWhatMatIMSPrints() throws {
        var checked = 0
        for (path, text) in Self.documents {
            for block in DocText.fencedBlocks(in: text) where block.info.hasPrefix("sh") {
                for (offset, line) in block.lines.enumerated() {
                    guard let hash = line.range(of: "#"), line.hasPrefix("mat-ims name ") else { continue }
                    let command = line[..<hash.lowerBound].split(separator: " ").map(String.init)
                    let expected = line[hash.upperBound...].trimmingCharacters(in: .whitespaces)
                    let printed = try check([LabPaths.matIMS] + command.dropFirst())
                    #expect(printed.trimmingCharacters(in: .whitespacesAndNewlines) == expected,
                            "\(path):\(block.line + 1 + offset)")
                    checked += 1
                }
            }
        }
        #expect(checked >= 1)
    }

    /// docs/config.md's `on-notify-peers` script is the one the VM lab's guest runs
    /// (`Interop/vm/run` migrates it), command for command, but for where its udhcpc event
    /// script lives.
    @Test func theReaddressScriptIsTheVMLabGuests() throws {
        let doc = try Self.document("docs/config.md")
        let block = try #require(DocText.fencedBlocks(in: doc).first { $0.lines.contains("#!/bin/sh") })
        let guest = try String(contentsOf: LabPaths.repositoryRoot.appendingPathComponent("Tools/vm/guest/readdress"),
                               encoding: .utf8)
        func commands(_ lines: [String]) -> [String] {
            lines.filter { !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
                .map { $0.replacingOccurrences(of: "/etc/mat-run/udhcpc.script", with: "/etc/udhcpc/mat.script") }
        }
        let documented = commands(block.lines)
        #expect(documented.count == 2)
        #expect(documented == commands(guest.components(separatedBy: "\n")))
    }

    // MARK: settings tables against the parsers

    /// The keys matd's parser takes in each section: the `case "key":` lines of its
    /// hand-written switches.
    static func matdParserKeys() throws -> [String: Set<String>] {
        let root = LabPaths.repositoryRoot
        let nodeSource = try String(contentsOf: root.appendingPathComponent("Sources/MATNode/NodeConfig.swift"), encoding: .utf8)
        let relaySource = try String(contentsOf: root.appendingPathComponent("Sources/MATNode/Mobility/RelaySettings.swift"),
                                     encoding: .utf8)
        return [
            "node": try DocText.caseLabels(in: nodeSource, from: "func readNode", to: "func readPeer"),
            "peer": try DocText.caseLabels(in: nodeSource, from: "func readPeer", to: "func readIMS"),
            "ims": try DocText.caseLabels(in: nodeSource, from: "func readIMS", to: "func validate"),
            "relay": try DocText.caseLabels(in: relaySource, from: "static func read", to: "func validate"),
        ]
    }

    /// Every key in docs/config.md's tables is one matd's parser takes in that section, and
    /// every key the parser takes (its `case "key":` lines) has a row there.
    @Test func matdSettingsTablesMatchTheParser() throws {
        let doc = try Self.document("docs/config.md")
        let parsed = try Self.matdParserKeys()
        let base = try DocText.baseExample()
        for (section, keys) in parsed {
            let documented = DocText.tableKeys(in: doc, heading: "## `[\(section)]`")
            #expect(documented == keys, """
                [\(section)]: only in the doc \(documented.subtracting(keys).sorted()), \
                only in the parser \(keys.subtracting(documented).sorted())
                """)
            // The parser itself, not only its source, takes each documented key.
            for key in documented {
                let text = DocText.merge("[\(section)]\n\(key) = x\n", into: base, replacing: false)
                do { _ = try NodeConfig(parsing: text) } catch {
                    #expect(!error.message.hasPrefix("unknown key"), "[\(section)] \(key): \(error)")
                }
            }
        }
    }

    /// Every default docs/config.md's tables give (`no, default 7540`) is the parser's: the
    /// full example with `key = <that default>` added is the example without it.
    @Test func matdDocumentedDefaultsAreTheParsersDefaults() throws {
        let doc = try Self.document("docs/config.md")
        let base = try DocText.baseExample()
        // Line numbers (kept for errors found later) move with the added line.
        func withoutLines(_ config: NodeConfig) -> NodeConfig {
            var config = config
            for index in config.peers.indices { config.peers[index].line = 0 }
            config.ims?.line = 0
            config.relay?.line = 0
            return config
        }
        let plain = withoutLines(try NodeConfig(parsing: base))
        var checked = 0
        for section in ["node", "ims"] {
            for (key, value) in DocText.tableDefaults(in: doc, heading: "## `[\(section)]`") {
                let text = DocText.merge("[\(section)]\n\(key) = \(value)\n", into: base)
                do {
                    #expect(withoutLines(try NodeConfig(parsing: text)) == plain, "[\(section)] \(key): the default is not \(value)")
                } catch {
                    Issue.record("[\(section)] \(key) = \(value), the documented default: \(error)")
                }
                checked += 1
            }
        }
        #expect(checked >= 14)
    }

    /// Every `key = value` of matd's the docs' prose quotes (`encap-keepalive = 1`,
    /// `uplink = *`, `serve = on`) parses in its section of the full example.
    @Test func matdSettingsQuotedInProseParse() throws {
        let parsed = try Self.matdParserKeys()
        // [peer] keys are left out: a quoted `home-address = ...` is the node's.
        let sections = ["node", "ims", "relay"].map { (name: $0, keys: parsed[$0] ?? []) }
        let base = try DocText.baseExample()
        var checked = 0
        for (path, text) in Self.documents {
            for (line, prose) in DocText.proseLines(in: text) {
                for span in prose.matches(of: /`([a-z][a-z0-9-]*) = ([^`]+)`/) {
                    let key = String(span.output.1)
                    guard let section = sections.first(where: { $0.keys.contains(key) })?.name else { continue }
                    let text = DocText.merge("[\(section)]\n\(key) = \(span.output.2)\n", into: base)
                    do { _ = try NodeConfig(parsing: text) } catch {
                        Issue.record("\(path):\(line): `\(span.output.0)`: \(error)")
                    }
                    checked += 1
                }
            }
        }
        #expect(checked >= 10)
    }

    /// The same for mat-ims: docs/ims.md's `[server]` and `[zone]` tables.
    @Test func matIMSSettingsTablesMatchTheParser() throws {
        let doc = try Self.document("docs/ims.md")
        let source = try String(contentsOf: LabPaths.repositoryRoot.appendingPathComponent("Sources/MATIMS/ConfigurationFile.swift"),
                                encoding: .utf8)
        var zoneKeys = try DocText.caseLabels(in: source, from: "case \"zone\":", to: "unknown section")
        zoneKeys.insert("name")  // read before the others: a [zone] needs it first
        let parsed: [String: Set<String>] = [
            "server": try DocText.caseLabels(in: source, from: "case \"server\":", to: "case \"zone\":"),
            "zone": zoneKeys,
        ]
        for (section, keys) in parsed {
            let documented = DocText.tableKeys(in: doc, heading: "### `[\(section)]`")
            #expect(documented == keys, """
                [\(section)]: only in the doc \(documented.subtracting(keys).sorted()), \
                only in the parser \(keys.subtracting(documented).sorted())
                """)
        }
    }

    /// Every event kind matd posts (`EventLog.shared.post("kind"` and the signaling
    /// machine's `.event("kind"`) is in docs/operations.md's Monitor section and in
    /// `matctl monitor --help`.
    @Test func everyMonitorEventKindIsDocumented() throws {
        let sources = LabPaths.repositoryRoot.appendingPathComponent("Sources/MATNode")
        var kinds: Set<String> = []
        let files = try FileManager.default.subpathsOfDirectory(atPath: sources.path).filter { $0.hasSuffix(".swift") }
        for file in files {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            for match in text.matches(of: /(?:EventLog\.shared\.post|\.event)\("([a-z_]+)"/) { kinds.insert(String(match.output.1)) }
        }
        #expect(kinds.count >= 10, "\(kinds.sorted())")
        let doc = try Self.document("docs/operations.md")
        let monitor = try #require(doc.range(of: "## Monitor").map { doc[$0.upperBound...] })
        let section = monitor[..<(monitor.range(of: "\n#")?.lowerBound ?? monitor.endIndex)]  // to the next heading
        let help = try check([LabPaths.matctl, "monitor", "--help"])
        for kind in kinds.sorted() {
            #expect(section.contains("`\(kind)`"), "docs/operations.md, Monitor: event \(kind) is not listed")
            #expect(help.contains(kind), "matctl monitor --help: event \(kind) is not listed")
        }
    }

    /// Every test the docs name as proof (`LossLabTests`, `CodecTests.bindingUpdateLiteralBytes`,
    /// `--filter RelayExpiryTests/aHundredThousandBindings`) is a suite or test that exists,
    /// so `swift test --filter` with it runs something.
    @Test func everyTestTheDocsNameExists() throws {
        let tests = LabPaths.repositoryRoot.appendingPathComponent("Tests")
        var types: Set<String> = []
        var functions: Set<String> = []
        var files: Set<String> = []
        for file in try FileManager.default.subpathsOfDirectory(atPath: tests.path) {
            if !file.contains("/") { types.insert(file) }  // a test target
            guard file.hasSuffix(".swift") else { continue }
            files.insert(((file as NSString).lastPathComponent as NSString).deletingPathExtension)
            let text = try String(contentsOf: tests.appendingPathComponent(file), encoding: .utf8)
            for match in text.matches(of: /(?:struct|class|enum|extension)\s+([A-Za-z0-9_]+)/) { types.insert(String(match.output.1)) }
            for match in text.matches(of: /func\s+([A-Za-z0-9_]+)/) { functions.insert(String(match.output.1)) }
        }
        var checked = 0
        for (path, text) in Self.documents {
            for (number, line) in text.components(separatedBy: "\n").enumerated() {
                for match in line.matches(of: /\b([A-Z][A-Za-z0-9]*Tests)\b(?:[.\/]([a-z][A-Za-z0-9]*))?/) {
                    let suite = String(match.output.1)
                    if match.output.2 == "swift" {
                        #expect(files.contains(suite), "\(path):\(number + 1): no file \(suite).swift under Tests/")
                        continue
                    }
                    #expect(types.contains(suite), "\(path):\(number + 1): no test suite \(suite)")
                    if let test = match.output.2 {
                        #expect(functions.contains(String(test)), "\(path):\(number + 1): no test \(suite).\(test)")
                    }
                    checked += 1
                }
            }
        }
        #expect(checked >= 100)
    }

    // MARK: command lines

    /// Every `matd`, `matctl` and `mat-ims` command line in the docs (code spans and shell
    /// blocks) names a subcommand and flags that the binary's `--help` lists.
    @Test func everyDocumentedCommandLineUsesRealSubcommandsAndFlags() throws {
        var help: [String: String] = [:]
        func helpText(_ words: [String]) throws -> String {
            let key = words.joined(separator: " ")
            if let known = help[key] { return known }
            let text = try check(words + ["--help"])
            help[key] = text
            return text
        }
        let binaries = ["matd": LabPaths.matd, "matctl": LabPaths.matctl, "mat-ims": LabPaths.matIMS]
        var checked = 0
        for (path, text) in Self.documents {
            for use in DocText.commandLines(in: text) {
                guard let binary = binaries[use.tool] else { continue }
                let top = try helpText([binary])
                let subcommands = DocText.subcommands(inHelp: top)
                var words = use.words
                var command = [binary]
                if let first = words.first, !first.hasPrefix("-") {
                    guard subcommands.contains(first) else {
                        if !use.strict { continue }
                        Issue.record("\(path):\(use.line): `\(use.tool) \(first)`: no such subcommand (\(subcommands.sorted()))")
                        continue
                    }
                    command.append(first)
                    words.removeFirst()
                } else if let defaultSubcommand = DocText.defaultSubcommand(inHelp: top) {
                    command.append(defaultSubcommand)
                }
                let flags = Set(try helpText(command).matches(of: /--[a-z][a-z0-9-]*/).map { String($0.output) })
                    .union(["--help", "--version"])
                for word in words where word.hasPrefix("--") {
                    let flag = String(word.prefix { $0 != "=" })
                    let invoked = ([use.tool] + command.dropFirst()).joined(separator: " ")
                    #expect(flags.contains(flag), "\(path):\(use.line): `\(use.text)`: \(flag) is not an option of `\(invoked)`")
                }
                checked += 1
            }
        }
        // Well over a hundred today; a parser that found none would pass vacuously.
        #expect(checked >= 100)
    }

    /// The package every doc installs (`mat_<version>_<arch>.deb`) is the version the
    /// binaries are (`Interop/deploy/run` checks docs/deploy.md against a built package).
    @Test func everyDocumentedPackageIsThisVersion() throws {
        let printed = try check([LabPaths.matd, "--version"]).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(printed == MATVersion.current)
        var checked = 0
        for (path, text) in Self.documents {
            for match in text.matches(of: /mat_([0-9][0-9.]*[0-9])_[a-z0-9]+\.deb/) {
                #expect(String(match.output.1) == MATVersion.current, "\(path): \(match.output.0)")
                checked += 1
            }
        }
        #expect(checked >= 3)
    }

    /// docs/migration.md's exit statuses of `matctl rebind` that need no matd: 1 with the
    /// reason on stderr when matd cannot be reached (as when it refuses; `MobilityLabTests`
    /// has the refusals), 64 for an option matctl does not take.
    @Test func rebindExitStatusesAreTheDocumentedOnes() throws {
        let directory = try TemporaryDirectory(prefix: "matdoc")
        defer { directory.remove() }
        let unreachable = try runCommand([LabPaths.matctl, "rebind", "--socket", directory.path + "/none.sock"], timeout: 60)
        #expect(!unreachable.signalled && unreachable.status == 1 && unreachable.stderr.contains("cannot reach matd"),
                "\(unreachable.summary)")
        let wrong = try runCommand([LabPaths.matctl, "rebind", "--no-such-option"], timeout: 60)
        #expect(!wrong.signalled && wrong.status == 64, "\(wrong.summary)")
    }

    /// Every script or file under Tools/ or Interop/ a shell block or code span starts a
    /// command with exists, and `Tools/bench` and `Tools/fuzz` have the subcommand it is given.
    @Test func everyDocumentedToolExists() throws {
        let root = LabPaths.repositoryRoot.path
        var checked = 0
        for (path, text) in Self.documents {
            for use in DocText.toolLines(in: text) {
                let script = root + "/" + use.script
                #expect(FileManager.default.fileExists(atPath: script), "\(path):\(use.line): \(use.script) does not exist")
                if ["Tools/bench", "Tools/fuzz"].contains(use.script), let sub = use.subcommand {
                    let body = (try? String(contentsOfFile: script, encoding: .utf8)) ?? ""
                    #expect(body.contains("\(sub))"), "\(path):\(use.line): \(use.script) has no subcommand \(sub)")
                }
                checked += 1
            }
        }
        #expect(checked >= 20)
    }
}
