#define _GNU_SOURCE
#include "CPlexus.h"
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stddef.h>
#include <sys/socket.h>

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
