// Calibration for docs/benchmarks.md: what each choice of syscalls costs in a 64-byte UDP
// ping-pong over loopback, busy-polling, two processes pinned to CPU 0 and CPU 1.
//   mode 0: connected send + recv        (the plain baseline of `plexus bench`)
//   mode 1: unconnected sendto + recvmmsg(32)
//   mode 2: unconnected sendmmsg(1) + recvmmsg(32)
//   mode 3: unconnected sendto + recvfrom (what a Plexus port can use at best: it serves many
//           peers, so it cannot connect, and it needs the source address to check the peer)
// Build and run: cc -O2 -o /tmp/udp-pingpong udp-pingpong.c && for m in 0 3 1 2; do /tmp/udp-pingpong $m; done
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}
static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}
static int udp(struct sockaddr_in *a) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    socklen_t l = sizeof *a;
    bind(fd, (void *)a, sizeof *a);
    getsockname(fd, (void *)a, &l);
    return fd;
}
static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static char buf[32][2048];
static struct mmsghdr rm[32];
static struct iovec riov[32];
static struct sockaddr_in names[32];

static void receive(int fd, int mode) {
    if (mode == 0) {
        while (recv(fd, buf[0], 2048, MSG_DONTWAIT) < 0) {}
    } else if (mode == 3) {
        socklen_t l = sizeof names[0];
        while (recvfrom(fd, buf[0], 2048, MSG_DONTWAIT, (void *)&names[0], &l) < 0) l = sizeof names[0];
    } else {
        while (recvmmsg(fd, rm, 32, MSG_DONTWAIT, NULL) <= 0) {}
        for (int k = 0; k < 32; k++) rm[k].msg_hdr.msg_namelen = sizeof names[k];
    }
}
static void transmit(int fd, int mode, struct sockaddr_in *to) {
    if (mode == 0) {
        send(fd, buf[0], 64, 0);
    } else if (mode == 2) {
        struct iovec iov = {buf[0], 64};
        struct mmsghdr m = {0};
        m.msg_hdr.msg_name = to;
        m.msg_hdr.msg_namelen = sizeof *to;
        m.msg_hdr.msg_iov = &iov;
        m.msg_hdr.msg_iovlen = 1;
        sendmmsg(fd, &m, 1, 0);
    } else {
        sendto(fd, buf[0], 64, 0, (void *)to, sizeof *to);
    }
}

int main(int argc, char **argv) {
    int mode = argc > 1 ? atoi(argv[1]) : 0, n = 20000, warm = 1000;
    struct sockaddr_in a = {.sin_family = AF_INET}, b = {.sin_family = AF_INET};
    a.sin_addr.s_addr = b.sin_addr.s_addr = inet_addr("127.0.0.1");
    int fa = udp(&a), fb = udp(&b);
    if (mode == 0) {
        connect(fa, (void *)&b, sizeof b);
        connect(fb, (void *)&a, sizeof a);
    }
    for (int i = 0; i < 32; i++) {
        riov[i] = (struct iovec){buf[i], 2048};
        rm[i].msg_hdr.msg_iov = &riov[i];
        rm[i].msg_hdr.msg_iovlen = 1;
        rm[i].msg_hdr.msg_name = &names[i];
        rm[i].msg_hdr.msg_namelen = sizeof names[i];
    }
    if (fork() == 0) {
        pin(1);
        for (int i = 0; i < n + warm; i++) {
            receive(fb, mode);
            transmit(fb, mode, &a);
        }
        exit(0);
    }
    pin(0);
    long long *s = malloc(sizeof *s * n);
    for (int i = 0; i < n + warm; i++) {
        long long t = now();
        transmit(fa, mode, &b);
        receive(fa, mode);
        if (i >= warm) s[i - warm] = now() - t;
    }
    wait(NULL);
    qsort(s, n, sizeof *s, cmp);
    printf("mode %d p50 %.2f us p99 %.2f us\n", mode, s[n / 2] / 1000.0, s[n * 99 / 100] / 1000.0);
    return 0;
}
