// Calibration for docs/virtual-lan.md ("The floor of any overlay here"): the least a userspace
// overlay can cost on this machine for what `plexus bench vlan-ping` measures. One process per
// namespace, pinned to a CPU, busy-polls a TAP device and a UDP socket: every packet the kernel
// sends out of the TAP goes to the peer in one UDP datagram, every datagram is written into the
// TAP. No header, no reliability, no second fabric, no control nodes, no copies beyond the two
// syscalls: the TAP and fabric costs alone. scripts/tap-overlay-floor.sh builds the namespaces
// (the same veth + bridge fabric as NamespaceFabric, and a direct veth pair as the baseline) and
// pings across both.
//   tap-overlay TAPNAME LOCAL_IP PEER_IP PORT CPU     (run inside the node's namespace)
//   tap-overlay --waker USEC                          (sleeps USEC µs, wakes, sleeps again:
//                                                       background wake-ups, like Plexus's control
//                                                       nodes' engines waking for heartbeats)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <time.h>

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--waker") == 0) {
        struct timespec t = { .tv_sec = 0, .tv_nsec = atol(argv[2]) * 1000L };
        for (;;) nanosleep(&t, NULL);
    }
    if (argc != 6) {
        fprintf(stderr, "usage: %s TAPNAME LOCAL_IP PEER_IP PORT CPU\n", argv[0]);
        return 2;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(atoi(argv[5]), &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity");

    int tap = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
    if (tap < 0) { perror("/dev/net/tun"); return 1; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(tap, TUNSETIFF, &ifr) != 0) { perror("TUNSETIFF"); return 1; }

    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in local = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[4])) };
    struct sockaddr_in peer = local;
    inet_pton(AF_INET, argv[2], &local.sin_addr);
    inet_pton(AF_INET, argv[3], &peer.sin_addr);
    if (bind(s, (struct sockaddr *)&local, sizeof local) != 0) { perror("bind"); return 1; }
    if (connect(s, (struct sockaddr *)&peer, sizeof peer) != 0) { perror("connect"); return 1; }
    printf("ready\n");
    fflush(stdout);

    static char buf[65536];
    for (;;) {
        ssize_t n = read(tap, buf, sizeof buf);
        if (n > 0) send(s, buf, (size_t)n, 0);
        n = recv(s, buf, sizeof buf, 0);
        if (n > 0) write(tap, buf, (size_t)n);
    }
}
