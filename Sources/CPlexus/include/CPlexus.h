// CPlexus: the only C in Plexus. Swift calls liburing's static-inline helpers directly through
// this module; what is here is only what Swift cannot reach: macros built from enum bits, and
// _GNU_SOURCE-only calls (CPU affinity, sched_getcpu, hole punching, pwritev2 flags).
#ifndef CPLEXUS_H
#define CPLEXUS_H

// System headers first, so that they are seen as Swift's Glibc module sees them: liburing.h
// defines _GNU_SOURCE, which would otherwise give this module different fd_set/sigset layouts.
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <signal.h>
#include <errno.h>
#include <inttypes.h>
#include <time.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <linux/io_uring.h>   // before liburing.h: shares an include guard with liburing's copy
#include <liburing.h>
#include <numa.h>
#include <stdint.h>
#include <string.h>

// SQE flags are macros over enum bits, which Swift does not import.
static const uint8_t plx_IOSQE_BUFFER_SELECT = IOSQE_BUFFER_SELECT;
static const uint8_t plx_IOSQE_FIXED_FILE = IOSQE_FIXED_FILE;
static const uint8_t plx_IOSQE_CQE_SKIP_SUCCESS = IOSQE_CQE_SKIP_SUCCESS;

static const uint32_t plx_IORING_CQE_F_BUFFER = IORING_CQE_F_BUFFER;
static const uint32_t plx_IORING_CQE_F_MORE = IORING_CQE_F_MORE;
static const uint32_t plx_IORING_CQE_F_NOTIF = IORING_CQE_F_NOTIF;
static const uint32_t plx_IORING_CQE_BUFFER_SHIFT = IORING_CQE_BUFFER_SHIFT;
static const uint32_t plx_IORING_SEND_ZC_REPORT_USAGE = IORING_SEND_ZC_REPORT_USAGE;
static const uint32_t plx_IORING_NOTIF_USAGE_ZC_COPIED = IORING_NOTIF_USAGE_ZC_COPIED;
static const uint32_t plx_IORING_SETUP_SINGLE_ISSUER = IORING_SETUP_SINGLE_ISSUER;
static const uint32_t plx_IORING_SETUP_DEFER_TASKRUN = IORING_SETUP_DEFER_TASKRUN;
static const uint32_t plx_IORING_SETUP_COOP_TASKRUN = IORING_SETUP_COOP_TASKRUN;
static const uint32_t plx_IORING_SETUP_SUBMIT_ALL = IORING_SETUP_SUBMIT_ALL;
static const uint32_t plx_IORING_ASYNC_CANCEL_ANY = IORING_ASYNC_CANCEL_ANY;
static const uint32_t plx_IORING_ASYNC_CANCEL_ALL = IORING_ASYNC_CANCEL_ALL;
static const uint32_t plx_IORING_TIMEOUT_MULTISHOT = (1U << 6);

/// Asks the kernel to attach to each datagram received on the socket the socket's cumulative
/// count of dropped datagrams (SO_RXQ_OVFL). The cmsg appears only once that count is non-zero.
static const int plx_SO_RXQ_OVFL = SO_RXQ_OVFL;
/// Room for the control messages of one received datagram: one SO_RXQ_OVFL cmsg (CMSG_SPACE(4)
/// is 24), rounded up to 32 so that a frame in a receive buffer stays 64-byte aligned.
static const unsigned plx_RECEIVE_CONTROL_SPACE = 32;
_Static_assert(CMSG_SPACE(sizeof(uint32_t)) <= 32, "SO_RXQ_OVFL cmsg room");

/// The socket's cumulative drop count (SO_RXQ_OVFL) from the `length` bytes of control messages
/// at `control` that came with one datagram, or -1 when they carry none. Walks the cmsgs with
/// the libc macros, which Swift does not import.
static inline int64_t plx_drop_count(const void *control, size_t length) {
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_control = (void *)control;
    m.msg_controllen = length;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL && c->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
            uint32_t v;
            memcpy(&v, CMSG_DATA(c), sizeof v);
            return v;
        }
    }
    return -1;
}

/// `struct mmsghdr` (a _GNU_SOURCE type Swift's Glibc module does not import), same layout.
struct plx_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};
/// recvmmsg(2) on `plx_mmsghdr`s. Returns the count received or -errno.
int plx_recvmmsg(int fd, struct plx_mmsghdr *vec, unsigned int n, int flags);
/// sendmmsg(2) on `plx_mmsghdr`s. Returns the count sent or -errno.
int plx_sendmmsg(int fd, struct plx_mmsghdr *vec, unsigned int n, int flags);

/// Opens (creating if needed) the TAP interface `name` in the calling thread's network
/// namespace: IFF_TAP | IFF_NO_PI, so each read or write is one whole Ethernet frame. With
/// `vnet_header`, each frame is preceded by a 10-byte struct virtio_net_hdr and checksum offload
/// (TUN_F_CSUM) is on. Writes the interface's name (at most 16 bytes with its NUL) to `actual`.
/// Returns the fd, or -errno.
int plx_tap_open(const char *name, int vnet_header, char *actual);

/// Sets interface `name`'s MAC address (6 bytes, if not NULL) and MTU (if > 0), then brings it
/// up, in the calling thread's network namespace. Returns 0 or an errno value.
int plx_if_configure(const char *name, const unsigned char *mac, int mtu);
/// Writes `count` ICMP echo requests (from `peer_ip`, to the TAP's own `tap_ip` and MAC
/// `tap_mac`; host byte order) into TAP `fd` (opened without a virtio header), 1 ms apart, and
/// stores in `samples` the nanoseconds from each write to reading the kernel's echo reply
/// (spinning on a non-blocking read). Returns the samples taken, or -errno.
int plx_tap_echo_probe(int fd, const unsigned char *tap_mac, uint32_t tap_ip, uint32_t peer_ip, int count, uint64_t *samples);
/// An interface's flags (SIOCGIFFLAGS) in the calling thread's network namespace, or -errno.
int plx_if_flags(const char *name);
static const int plx_IFF_PROMISC = 0x100;

/// Moves the calling thread (only it) into the network namespace at `path`
/// (e.g. /var/run/netns/NAME). Returns 0 or an errno value.
int plx_enter_netns(const char *path);

/// Pins the calling thread to one CPU. Returns 0 or an errno value.
int plx_pin_current_thread(int cpu);
/// The CPU the calling thread runs on, or -1.
int plx_current_cpu(void);
/// Gives the calling thread a name visible in `top -H` (at most 15 characters).
void plx_name_current_thread(const char *name);

/// Starts `path` with `argv` (NULL-terminated) in a process group of its own, its standard
/// input, output and error on the given descriptors (-1: /dev/null), every other descriptor
/// closed, every signal at its default action and none blocked, and SIGKILL as its parent-death
/// signal: it dies when the calling thread (or the whole process) does. Returns the process id,
/// or -errno.
int plx_spawn(const char *path, char *const argv[], int in_fd, int out_fd, int err_fd);

/// fallocate(2) with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: deallocates `length` bytes at
/// `offset` of file `fd` (they read back as zeroes) without changing its size. Returns 0 or an
/// errno value (EOPNOTSUPP where the file system cannot punch holes).
int plx_punch_hole(int fd, int64_t offset, int64_t length);
/// pwritev2(2) of one buffer with RWF_DSYNC: returns once the data (and what is needed to read it
/// back) is on stable storage, a forced unit access. Returns the bytes written, or -errno.
int64_t plx_pwrite_dsync(int fd, const void *buffer, size_t length, int64_t offset);

// MARK: - Block I/O on the engine's ring (backing files and block devices)

/// Constants of _GNU_SOURCE or kernel headers that Swift's Glibc module does not reach; shim.c
/// checks each against its system definition.
enum {
    plx_O_DIRECT = 040000,
    /// Per-write O_DSYNC (`rw_flags` of a READ/WRITE SQE): the write completes once its data is
    /// on stable storage ("write through", SCSI's FUA).
    plx_RWF_DSYNC = 0x2,
    plx_FALLOC_FL_KEEP_SIZE = 0x1,
    plx_FALLOC_FL_PUNCH_HOLE = 0x2,
    plx_IORING_FSYNC_DATASYNC = 0x1,
    /// `_IO(0x12, 0)`: discard a byte range of a block device through IORING_OP_URING_CMD
    /// (kernel 6.12 and later; older kernels complete it with -EOPNOTSUPP or -EINVAL).
    plx_BLOCK_URING_CMD_DISCARD = 0x1200,
};
static const int64_t plx_TMPFS_MAGIC = 0x01021994;

/// What an open backing file or block device is (plx_block_probe).
struct plx_block_probe {
    /// 1: a regular file, 2: a block device, 0: anything else.
    int32_t kind;
    /// Whether statx reported direct I/O alignments (STATX_DIOALIGN, kernel 6.1 and later).
    int32_t dio_reported;
    /// Bytes: st_size of a file, BLKGETSIZE64 of a block device.
    uint64_t size;
    /// BLKSSZGET and BLKPBSZGET of a block device; 0 for a file.
    uint32_t logical_block;
    uint32_t physical_block;
    /// statx's stx_dio_mem_align and stx_dio_offset_align (0 when not reported, or when the
    /// file cannot do direct I/O).
    uint32_t dio_mem_align;
    uint32_t dio_offset_align;
    /// fstatfs's f_type of the file system holding the file.
    int64_t fs_type;
};
/// Fills `out` for the open file `fd`: its kind, size, block sizes, direct I/O alignments and
/// file system type. Returns 0 or -errno.
int plx_block_probe(int fd, struct plx_block_probe *out);

/// Prepares a discard of `len` bytes at `start` of the block device `fd` (IORING_OP_URING_CMD
/// with BLOCK_URING_CMD_DISCARD: the start in `addr`, the length in `addr3`).
static inline void plx_prep_block_discard(struct io_uring_sqe *sqe, int fd, uint64_t start, uint64_t len) {
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, NULL, 0, 0);
    sqe->cmd_op = plx_BLOCK_URING_CMD_DISCARD;
    sqe->addr = start;
    sqe->addr3 = len;
}

/// Bytes allocated with malloc and in use now, over the whole process (glibc's mallinfo2
/// uordblks): what tests measure a structure's memory with.
size_t plx_malloc_in_use(void);

#endif
