import CShim

/// Network namespaces, for tools and tests that act inside a lab namespace.
public enum NetworkNamespace {
    /// Moves the calling thread into the namespace at `path` (for example
    /// `/run/netns/NAME`). Sockets and devices the thread opens afterwards live there.
    public static func enter(path: String) throws(SystemError) {
        let result = mat_enter_network_namespace(path)
        guard result == 0 else { throw SystemError("enter network namespace \(path)", errno: -result) }
    }
}
