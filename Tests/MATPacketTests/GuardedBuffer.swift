#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Two pages of memory, the second mapped with no access. A packet copied so that it ends
/// where the guard page starts makes any out-of-bounds read past its end crash the test.
final class GuardedBuffer: @unchecked Sendable {
    static let shared = GuardedBuffer()

    private let base: UnsafeMutableRawPointer
    private let pageSize: Int
    private let capacity: Int
    private let lock = Mutex(())

    private init() {
        pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        capacity = 32 * pageSize
        guard let mapping = mmap(nil, capacity + pageSize, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              mapping != MAP_FAILED else { fatalError("mmap failed") }
        base = mapping
        guard mprotect(base + capacity, pageSize, PROT_NONE) == 0 else { fatalError("mprotect failed") }
    }

    /// Calls `body` with a writable copy of `bytes` that ends at the guard page.
    func withPacket<R>(_ bytes: [UInt8], _ body: (UnsafeMutableRawPointer, Int) -> R) -> R {
        precondition(bytes.count <= capacity)
        return lock.withLock { _ in
            let start = base + (capacity - bytes.count)
            bytes.withUnsafeBytes { source in
                if let from = source.baseAddress { start.copyMemory(from: from, byteCount: bytes.count) }
            }
            return body(start, bytes.count)
        }
    }
}
