#ifndef MAT_CSHIM_H
#define MAT_CSHIM_H

#include <stddef.h>
#include <stdint.h>

// What Swift cannot import from the kernel headers: ioctl request macros built with
// _IOW, and <linux/if.h> / <linux/if_tun.h>, which clash with Glibc's <net/if.h>.

/// Offload bits for mat_tun_set_offload (TUN_F_* values).
enum {
    MAT_TUN_F_CSUM = 0x01,
    MAT_TUN_F_TSO4 = 0x02,
    MAT_TUN_F_TSO6 = 0x04,
    MAT_TUN_F_USO4 = 0x20,
    MAT_TUN_F_USO6 = 0x40,
};

/// Opens /dev/net/tun and attaches it to the TUN device `name` (created if missing) with
/// IFF_TUN | IFF_NO_PI, plus IFF_VNET_HDR when `vnet_header` is non-zero. Writes the
/// kernel's name for the device into `name_out` (at least 16 bytes). Returns the file
/// descriptor, or -errno.
int mat_tun_open(const char *name, int vnet_header, char *name_out, size_t name_out_len);

/// Sets the virtio net header size the device reads and writes (TUNSETVNETHDRSZ).
/// Returns 0 or -errno.
int mat_tun_set_vnet_header_size(int fd, int size);

/// Enables offloads (TUNSETOFFLOAD, MAT_TUN_F_* bits). Returns 0 or -errno.
int mat_tun_set_offload(int fd, unsigned int flags);

/// Makes the device outlive its descriptor (TUNSETPERSIST) or not. Returns 0 or -errno.
int mat_tun_set_persistent(int fd, int persistent);

/// Size of struct virtio_net_hdr as the kernel headers define it.
size_t mat_virtio_net_hdr_size(void);

/// Moves the calling thread into the network namespace at `path` (setns, which Glibc
/// declares only under _GNU_SOURCE). Returns 0 or -errno.
int mat_enter_network_namespace(const char *path);

/// The bpf(2) system call (Glibc has no wrapper, and Swift cannot call the variadic
/// syscall(2)): `command` with the `size` bytes of union bpf_attr at `attributes`.
/// Returns the call's result (a file descriptor or 0), or -errno.
int mat_bpf(int command, void *attributes, unsigned int size);

/// pidfd_open(2) (Linux 5.3; Glibc before 2.36 has no wrapper): a descriptor, close-on-exec,
/// that polls readable when the child `pid` ends. Returns it, or -errno.
int mat_pidfd_open(int pid);

#endif
