#define _GNU_SOURCE
#include "CPlexus.h"
#include <pthread.h>
#include <sched.h>
#include <errno.h>

_Static_assert(sizeof(struct io_uring_recvmsg_out) == 16, "recvmsg_out layout");
_Static_assert(sizeof(struct sockaddr_in) == 16, "sockaddr_in layout");

int plx_pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int plx_current_cpu(void) { return sched_getcpu(); }

void plx_name_current_thread(const char *name) { pthread_setname_np(pthread_self(), name); }
