#define _GNU_SOURCE
#include "CPlexus.h"
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <string.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <net/if_arp.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/falloc.h>
#include <linux/fs.h>

_Static_assert(sizeof(struct io_uring_recvmsg_out) == 16, "recvmsg_out layout");
_Static_assert(sizeof(struct sockaddr_in) == 16, "sockaddr_in layout");

_Static_assert(sizeof(struct plx_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");
_Static_assert(offsetof(struct plx_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "mmsghdr layout");

int plx_recvmmsg(int fd, struct plx_mmsghdr *vec, unsigned int n, int flags) {
    int r = recvmmsg(fd, (struct mmsghdr *)vec, n, flags, NULL);
    return r < 0 ? -errno : r;
}

int plx_sendmmsg(int fd, struct plx_mmsghdr *vec, unsigned int n, int flags) {
    int r = sendmmsg(fd, (struct mmsghdr *)vec, n, flags);
    return r < 0 ? -errno : r;
}

int plx_pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int plx_enter_netns(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    int r = setns(fd, CLONE_NEWNET);
    int e = errno;
    close(fd);
    return r == 0 ? 0 : e;
}

int plx_current_cpu(void) { return sched_getcpu(); }

void plx_name_current_thread(const char *name) { pthread_setname_np(pthread_self(), name); }

int plx_tap_open(const char *name, int vnet_header, char *actual) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_header ? IFF_VNET_HDR : 0);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (vnet_header) {
        int size = 10;  /* struct virtio_net_hdr, without num_buffers */
        /* Checksum offload only: the kernel hands us packets with a partial checksum and
           segments no larger than the MTU (no TSO, whose 64 KiB segments would not fit a frame). */
        if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0 || ioctl(fd, TUNSETOFFLOAD, (unsigned long)TUN_F_CSUM) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    strncpy(actual, ifr.ifr_name, IFNAMSIZ);
    actual[IFNAMSIZ - 1] = 0;
    return fd;
}

int plx_if_flags(const char *name) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ? -errno : (ifr.ifr_flags & 0xffff);
    close(s);
    return rc;
}

int plx_if_configure(const char *name, const unsigned char *mac, int mtu) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    int rc = 0;
    if (mac) {
        ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
        memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
        if (ioctl(s, SIOCSIFHWADDR, &ifr) < 0) { rc = errno; goto out; }
    }
    if (mtu > 0) {
        ifr.ifr_mtu = mtu;
        if (ioctl(s, SIOCSIFMTU, &ifr) < 0) { rc = errno; goto out; }
    }
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) { rc = errno; goto out; }
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) { rc = errno; goto out; }
out:
    close(s);
    return rc;
}

/* The kernel's own cost of answering an ICMP echo through a TAP device, for the vlan-ping
   benchmark's baseline (the floor under any userspace virtual LAN built on TAP devices). */
static uint16_t plx_inet_checksum(const uint8_t *p, int n) {
    uint32_t s = 0;
    for (int i = 0; i + 1 < n; i += 2) s += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1) s += (uint32_t)p[n - 1] << 8;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static uint64_t plx_monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

int plx_tap_echo_probe(int fd, const unsigned char *tap_mac, uint32_t tap_ip, uint32_t peer_ip,
                       int count, uint64_t *samples) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -errno;
    uint8_t f[98];
    memset(f, 0, sizeof f);
    static const uint8_t peer_mac[6] = {2, 0, 0, 0x98, 0, 2};
    memcpy(f, tap_mac, 6);
    memcpy(f + 6, peer_mac, 6);
    f[12] = 0x08; f[13] = 0x00;
    uint8_t *ip = f + 14;
    ip[0] = 0x45; ip[2] = 0; ip[3] = 84; ip[8] = 64; ip[9] = 1;
    for (int i = 0; i < 4; i++) { ip[12 + i] = (uint8_t)(peer_ip >> (24 - 8 * i)); ip[16 + i] = (uint8_t)(tap_ip >> (24 - 8 * i)); }
    uint16_t c = plx_inet_checksum(ip, 20); ip[10] = (uint8_t)(c >> 8); ip[11] = (uint8_t)c;
    uint8_t *icmp = ip + 20;
    icmp[0] = 8; icmp[4] = 0x50; icmp[5] = 0x58;
    uint8_t buf[2048];
    int taken = 0;
    for (int k = 0; k < count; k++) {
        icmp[6] = (uint8_t)(k >> 8); icmp[7] = (uint8_t)k; icmp[2] = 0; icmp[3] = 0;
        c = plx_inet_checksum(icmp, 64); icmp[2] = (uint8_t)(c >> 8); icmp[3] = (uint8_t)c;
        uint64_t t0 = plx_monotonic_ns();
        if (write(fd, f, sizeof f) != (ssize_t)sizeof f) return -errno;
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (plx_monotonic_ns() - t0 > 1000000000ull) return -ETIMEDOUT;
                continue;
            }
            if (n < 0) return -errno;
            if (n >= 42 && buf[12] == 0x08 && buf[13] == 0 && buf[23] == 1 && buf[34] == 0
                && buf[40] == icmp[6] && buf[41] == icmp[7]) break;  /* our echo reply */
        }
        samples[taken++] = plx_monotonic_ns() - t0;
        usleep(1000);
    }
    return taken;
}

struct plx_spawn_args {
    const char *path;
    char *const *argv;
    int fds[3];
    pid_t parent;
};

extern char **environ;

/* The child of plx_spawn, on its own small stack, sharing the parent's memory until it execs
   (CLONE_VM | CLONE_VFORK, as posix_spawn does): only async-signal-safe calls. */
static int plx_spawn_child(void *arg) {
    struct plx_spawn_args *a = arg;
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != a->parent) _exit(127);  /* the parent died before prctl */
    /* Move the three descriptors above 2 first, so that dup2 cannot overwrite one another. */
    int high[3];
    for (int i = 0; i < 3; i++) {
        high[i] = fcntl(a->fds[i], F_DUPFD, 3);
        if (high[i] < 0) _exit(127);
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(high[i], i) < 0) _exit(127);
    }
    syscall(SYS_close_range, 3U, ~0U, 0U);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < _NSIG; s++) {
        if (s != SIGKILL && s != SIGSTOP) sigaction(s, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(a->path, a->argv, environ);
    _exit(127);
}

int plx_spawn(const char *path, char *const argv[], int in_fd, int out_fd, int err_fd) {
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) return -errno;
    struct plx_spawn_args a = {
        .path = path, .argv = argv,
        .fds = { in_fd >= 0 ? in_fd : null_fd, out_fd >= 0 ? out_fd : null_fd, err_fd >= 0 ? err_fd : null_fd },
        .parent = getpid(),
    };
    /* Not fork: a fork copies the page tables, and eagerly every page pinned for io_uring
       (registered buffers), stalling the engine threads; a vfork-style clone copies nothing. */
    size_t size = 64 * 1024;
    void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        int e = errno;
        close(null_fd);
        return -e;
    }
    /* Nothing is delivered to the child before it has reset the signal actions. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = clone(plx_spawn_child, (char *)stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stack, size);
    close(null_fd);
    return pid < 0 ? -e : pid;
}

int plx_punch_hole(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) == 0 ? 0 : errno;
}

int64_t plx_pwrite_dsync(int fd, const void *buffer, size_t length, int64_t offset) {
    struct iovec iov = { .iov_base = (void *)buffer, .iov_len = length };
    ssize_t r = pwritev2(fd, &iov, 1, (off_t)offset, RWF_DSYNC);
    return r < 0 ? -(int64_t)errno : (int64_t)r;
}

/* Block I/O: the constants CPlexus.h spells out, checked against the system's. */
_Static_assert(plx_O_DIRECT == O_DIRECT, "O_DIRECT");
_Static_assert(plx_RWF_DSYNC == RWF_DSYNC, "RWF_DSYNC");
_Static_assert(plx_FALLOC_FL_KEEP_SIZE == FALLOC_FL_KEEP_SIZE, "FALLOC_FL_KEEP_SIZE");
_Static_assert(plx_FALLOC_FL_PUNCH_HOLE == FALLOC_FL_PUNCH_HOLE, "FALLOC_FL_PUNCH_HOLE");
_Static_assert(plx_IORING_FSYNC_DATASYNC == IORING_FSYNC_DATASYNC, "IORING_FSYNC_DATASYNC");
_Static_assert(plx_BLOCK_URING_CMD_DISCARD == _IO(0x12, 0), "BLOCK_URING_CMD_DISCARD");

int plx_block_probe(int fd, struct plx_block_probe *out) {
    memset(out, 0, sizeof *out);
    struct statfs fs;
    if (fstatfs(fd, &fs) == 0) out->fs_type = (int64_t)fs.f_type;
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    if (S_ISREG(st.st_mode)) {
        out->kind = 1;
        out->size = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        out->kind = 2;
        uint64_t bytes = 0;
        int logical = 0;
        unsigned int physical = 0;
        if (ioctl(fd, BLKGETSIZE64, &bytes) < 0 || ioctl(fd, BLKSSZGET, &logical) < 0
            || ioctl(fd, BLKPBSZGET, &physical) < 0) return -errno;
        out->size = bytes;
        out->logical_block = (uint32_t)logical;
        out->physical_block = physical;
    } else {
        return 0;
    }
#ifdef STATX_DIOALIGN
    struct statx sx;
    memset(&sx, 0, sizeof sx);
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
        out->dio_reported = 1;
        out->dio_mem_align = sx.stx_dio_mem_align;
        out->dio_offset_align = sx.stx_dio_offset_align;
    }
#endif
    return 0;
}

#include <malloc.h>

size_t plx_malloc_in_use(void) {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks;
}
