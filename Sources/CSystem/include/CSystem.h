#ifndef MAT_CSYSTEM_H
#define MAT_CSYSTEM_H

#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <time.h>

/* What Glibc declares only under _GNU_SOURCE, which Swift's Glibc module is built
 * without: the batched socket calls, ppoll and thread names. The vectors are arrays of the kernel's
 * struct mmsghdr, passed untyped (MATSystem's MessageHeader has its layout). */

int mat_recvmmsg(int fd, void *vector, unsigned int count, int flags, struct timespec *timeout);
int mat_sendmmsg(int fd, void *vector, unsigned int count, int flags);
int mat_ppoll(struct pollfd *descriptors, unsigned long count, const struct timespec *timeout);

/* pthread_setname_np: names show in top -H, ps -L and gdb (15 bytes at most). */
int mat_thread_set_name(pthread_t thread, const char *name);

/* sizeof(struct mmsghdr) and offsetof(struct mmsghdr, msg_len), to check the layout. */
size_t mat_mmsghdr_size(void);
size_t mat_mmsghdr_length_offset(void);

#endif
