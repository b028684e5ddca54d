/* SPDX-License-Identifier: GPL-2.0-only */
/* Host facts the daemon needs before it loads anything. */
#ifndef DBW_SYS_H
#define DBW_SYS_H

#include <stddef.h>

/*
 * Check that this process can load BPF (root or CAP_BPF + CAP_NET_ADMIN +
 * CAP_PERFMON) and that the kernel has BTF. Returns 0, or -1 with a one-line
 * reason in err.
 */
int sys_check_privileges(char *err, size_t errlen);

/* Mount bpffs at /sys/fs/bpf unless it is there. Returns 0 or -errno. */
int sys_mount_bpffs(void);

/*
 * The cgroup v2 mount point: /sys/fs/cgroup on unified hosts,
 * /sys/fs/cgroup/unified on hybrid ones; found in /proc/self/mountinfo.
 * Returns 0 and fills path, or -1 when no cgroup2 is mounted.
 */
int sys_cgroup2_mount(char *path, size_t len);

#endif /* DBW_SYS_H */
