import CNftables
import Foundation

/// Applies nftables commands through libnftables. A batch given to `run` is one netlink
/// transaction: it applies whole or not at all, so a half-written ruleset never exists.
///
/// Not thread-safe: one owner uses it from one thread at a time.
public final class Nftables {
    private let context: OpaquePointer

    /// Creates a context that captures output and errors instead of printing them.
    public init() throws(SystemError) {
        guard let context = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else {
            throw SystemError("create nftables context", detail: "out of memory")
        }
        nft_ctx_buffer_output(context)
        nft_ctx_buffer_error(context)
        self.context = context
    }

    deinit { nft_ctx_free(context) }

    /// Runs `commands` (nft syntax, several lines allowed) as one transaction and returns
    /// what nft would print.
    @discardableResult
    public func run(_ commands: String) throws(SystemError) -> String {
        let result = nft_run_cmd_from_buffer(context, commands)
        let output = nft_ctx_get_output_buffer(context).map { String(cString: $0) } ?? ""
        let errors = nft_ctx_get_error_buffer(context).map { String(cString: $0) } ?? ""
        guard result == 0 else {
            let firstLine = commands.split(separator: "\n").first.map(String.init) ?? commands
            throw SystemError("nftables: \(firstLine)", detail: errors.isEmpty ? "failed" : errors)
        }
        return output
    }

    /// Runs `commands` like `run` and returns nft's JSON output (`nft -j`), for reading
    /// rulesets without parsing their text form.
    public func runJSON(_ commands: String) throws(SystemError) -> String {
        let flags = nft_ctx_output_get_flags(context)
        nft_ctx_output_set_flags(context, flags | UInt32(NFT_CTX_OUTPUT_JSON))
        defer { nft_ctx_output_set_flags(context, flags) }
        return try run(commands)
    }

    /// Whether `family`'s table `name` is there (has chains: every table matd writes has).
    /// Asking lists the chains: listing the tables, a table or one of its chains makes nft
    /// read every element of every set first (0.4, 1.5 and 1.1 s beside a set of 100,000
    /// addresses, nft 1.0.6), listing the chains does not (6 ms).
    public func hasTable(family: String, name: String) throws(SystemError) -> Bool {
        !(try chainNames(family: family, table: name)).isEmpty
    }

    /// The commands that delete `family`'s table `name` whether it is there or not: it is
    /// added first, so the delete cannot fail on a table that is not there. Not for a table
    /// made with `flags owner` (the kernel refuses to add it again without the flag:
    /// "Operation not supported", and the whole transaction with it).
    public static func deletingTable(family: String, name: String) -> [String] {
        ["add table \(family) \(name)", "delete table \(family) \(name)"]
    }

    /// Deletes `family`'s table `name` if it is there, and says whether it was
    /// (``hasTable(family:name:)``). Only a present table is deleted, and by name alone, so
    /// an owned table (`flags owner`, the kernel fast path's) goes as any other.
    @discardableResult
    public func deleteTable(family: String, name: String) throws(SystemError) -> Bool {
        guard try hasTable(family: family, name: name) else { return false }
        try run("delete table \(family) \(name)")
        return true
    }

    /// The names of the chains of `family`'s table `table` (cheap, as ``hasTable(family:name:)`` says).
    public func chainNames(family: String, table: String) throws(SystemError) -> Set<String> {
        Set(try objects("list chains \(family)", kind: "chain")
            .filter { $0["table"] as? String == table }.compactMap { $0["name"] as? String })
    }

    /// The objects of one kind (`table`, `chain`) in the JSON answer to a listing.
    private func objects(_ listing: String, kind: String) throws(SystemError) -> [[String: Any]] {
        let text = try runJSON(listing)
        guard let json = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let items = json["nftables"] as? [[String: Any]] else {
            throw SystemError("nftables: \(listing)", detail: "not nft's JSON: \(text.prefix(80))")
        }
        return items.compactMap { $0[kind] as? [String: Any] }
    }
}
