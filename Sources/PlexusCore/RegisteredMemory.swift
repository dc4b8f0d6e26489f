import CPlexus
#if canImport(Glibc)
import Glibc
#endif

/// Whether registered memory should sit on huge pages.
public enum HugePagePolicy: Sendable, Hashable {
    /// Use reserved huge pages (`MAP_HUGETLB`) when the system has them, otherwise ask for
    /// transparent huge pages with `madvise(MADV_HUGEPAGE)`, otherwise plain pages.
    case ifAvailable
    /// Plain 4 KiB pages only.
    case never
}

/// A page-aligned region of memory for frames and RDMA targets.
///
/// Placed on the NUMA node of the thread that creates it (libnuma), on huge pages when the
/// system has them, and never moved or freed while the engine runs. This is the "memory for
/// buffers and queues" that the seed's Giganet driver allocates ("Giganet Driver").
public final class RegisteredMemory {
    /// How the pages backing a region were obtained.
    public enum Backing: String, Sendable {
        /// Reserved huge pages (`MAP_HUGETLB`).
        case hugetlb
        /// Plain pages with `MADV_HUGEPAGE` accepted: the kernel may back them with THP.
        case transparentHugePages = "thp"
        /// Plain pages.
        case pages
    }

    /// The mapping's first byte. Not public: pointers into registered memory reach code only
    /// inside a frame's or a region's closure (`withUnsafeBytes`, `withRegion`), never to keep.
    let base: UnsafeMutableRawPointer
    public let size: Int
    public let backing: Backing
    /// The NUMA node the memory was bound to, or nil when libnuma reports no NUMA.
    public let numaNode: Int32?

    static let hugePageSize = 2 << 20

    /// Maps `size` bytes (rounded up to a page, or a huge page when huge pages are used).
    public init(size requested: Int, hugePages: HugePagePolicy = .ifAvailable) throws(PlexusError) {
        guard requested > 0 else { throw PlexusError(.configuration, "a memory region needs a positive size") }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var size = (requested + page - 1) / page * page
        var backing = Backing.pages
        var base: UnsafeMutableRawPointer? = nil
        let prot = PROT_READ | PROT_WRITE
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE
        if hugePages == .ifAvailable && size >= Self.hugePageSize {
            let hsize = (size + Self.hugePageSize - 1) / Self.hugePageSize * Self.hugePageSize
            let p = mmap(nil, hsize, prot, flags | MAP_HUGETLB, -1, 0)
            if let p, p != MAP_FAILED {
                base = p
                size = hsize
                backing = .hugetlb
            }
        }
        if base == nil {
            let p = mmap(nil, size, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let p, p != MAP_FAILED else { throw .system("mmap of \(size) bytes") }
            base = p
            if hugePages == .ifAvailable && madvise(p, size, MADV_HUGEPAGE) == 0 { backing = .transparentHugePages }
        }
        var node: Int32? = nil
        if numa_available() >= 0 {
            let cpu = plx_current_cpu()
            let n = cpu >= 0 ? numa_node_of_cpu(cpu) : 0
            if n >= 0 {
                numa_tonode_memory(base, size, n)
                node = n
            }
        }
        // Touch every page now so the data path never takes a page fault on first use.
        if backing != .hugetlb { memset(base!, 0, size) }
        self.base = base!
        self.size = size
        self.backing = backing
        self.numaNode = node
    }

    deinit { munmap(base, size) }
}

@available(*, unavailable)
extension RegisteredMemory: Sendable {}
