/* SPDX-License-Identifier: GPL-2.0-only */
/* `dbwarden run`: the daemon. */
#ifndef DBW_AGENT_H
#define DBW_AGENT_H

#include "capture.h"
#include "k8s.h"
#include "output.h"

struct agent_opts {
	struct output_opts out; /* --output ..., --state-dir, --kafka-* */
	const char *cgroup; /* NULL: the cgroup v2 root */
	struct capture_port ports[CAPTURE_MAX_PORTS];
	int nports;
	size_t ringbuf_bytes;
	size_t max_conns;
	const char *record; /* --record: also write raw records here */
	const char *policy; /* --policy FILE; SIGHUP reads it again */
	const char *api; /* --api PATH: the local API socket (approvals) */
	bool tls; /* probe TLS libraries (--no-tls clears it) */
	const char *metrics; /* --metrics ADDR:PORT: /metrics, /healthz, /readyz, /status */
	struct k8s_opts k8s; /* --k8s-*, --node-name; NULL fields: in-cluster defaults */
	const char *pin_dir; /* --pin-dir (default DBW_PIN_DIR); NULL: --no-pin */
	bool fail_closed; /* --fail-mode closed */
};

#define DBW_API_DEFAULT "/run/dbwarden/api.sock"
#define DBW_PIN_DIR	"/sys/fs/bpf/dbwarden"
#define DBW_VERSION	"0.1.0"
/* the port `dbwarden status` asks on by default, as the deployment files set --metrics */
#define DBW_METRICS_PORT "9465"

/* Run until SIGINT/SIGTERM. Returns the process exit code. */
int agent_run(const struct agent_opts *o);

/* `dbwarden replay`: a --record file through the userspace pipeline. */
int agent_replay(const char *path, unsigned repeat, const struct output_opts *out,
		 const char *policy);

#endif /* DBW_AGENT_H */
