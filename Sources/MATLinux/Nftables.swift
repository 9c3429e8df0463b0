import CNftables

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
}
