#define _GNU_SOURCE
#include "CShim.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>

int mat_tun_open(const char *name, int vnet_header, char *name_out, size_t name_out_len) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet_header ? IFF_VNET_HDR : 0);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &request) < 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    if (name_out && name_out_len > 0) {
        strncpy(name_out, request.ifr_name, name_out_len - 1);
        name_out[name_out_len - 1] = 0;
    }
    return fd;
}

int mat_tun_set_vnet_header_size(int fd, int size) {
    return ioctl(fd, TUNSETVNETHDRSZ, &size) < 0 ? -errno : 0;
}

int mat_tun_set_offload(int fd, unsigned int flags) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0 ? -errno : 0;
}

int mat_tun_set_persistent(int fd, int persistent) {
    return ioctl(fd, TUNSETPERSIST, (unsigned long)persistent) < 0 ? -errno : 0;
}

size_t mat_virtio_net_hdr_size(void) {
    return sizeof(struct virtio_net_hdr);
}

int mat_enter_network_namespace(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int result = setns(fd, CLONE_NEWNET);
    int error = errno;
    close(fd);
    return result < 0 ? -error : 0;
}

int mat_bpf(int command, void *attributes, unsigned int size) {
    long result = syscall(SYS_bpf, command, attributes, size);
    return result < 0 ? -errno : (int)result;
}

int mat_pidfd_open(int pid) {
    long result = syscall(SYS_pidfd_open, pid, 0);
    return result < 0 ? -errno : (int)result;
}
