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
