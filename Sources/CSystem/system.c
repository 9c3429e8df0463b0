#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>

#include "CSystem.h"

int mat_recvmmsg(int fd, void *vector, unsigned int count, int flags, struct timespec *timeout) {
    return recvmmsg(fd, (struct mmsghdr *)vector, count, flags, timeout);
}

int mat_sendmmsg(int fd, void *vector, unsigned int count, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)vector, count, flags);
}

int mat_ppoll(struct pollfd *descriptors, unsigned long count, const struct timespec *timeout) {
    return ppoll(descriptors, (nfds_t)count, timeout, NULL);
}

int mat_thread_set_name(pthread_t thread, const char *name) { return pthread_setname_np(thread, name); }

size_t mat_mmsghdr_size(void) { return sizeof(struct mmsghdr); }

size_t mat_mmsghdr_length_offset(void) { return offsetof(struct mmsghdr, msg_len); }
