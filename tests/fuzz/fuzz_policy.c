// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer: the policy loader (libyaml underneath) on arbitrary files, as
 * a DBA's typo or a hostile ConfigMap would give it; a policy that loads is
 * also printed and compiled for the kernel.
 */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/mman.h>

#include "policy.h"

static void on_column(void *ctx, const char *name, uint32_t rules)
{
}

static void on_uid(void *ctx, uint32_t uid, uint32_t rules)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dbw_guard_text texts[DBW_GUARD_RULES], unparsed;
	struct dbw_guard_rule rules[DBW_GUARD_RULES];
	struct dbw_guard_cfg cfg;
	char path[64], err[4096];
	int fd = memfd_create("policy", MFD_CLOEXEC);
	struct policy *p;
	FILE *null;

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	p = policy_load(path, err, sizeof(err));
	close(fd);
	if (!p)
		return 0;
	null = fopen("/dev/null", "w");
	if (null) {
		policy_print(p, null);
		fclose(null);
	}
	policy_kernel(p, rules, texts, &unparsed, &cfg);
	{
		struct dbw_mask_rule mrules[DBW_MASK_RULES];
		struct policy_conn c = { .user = "",
					 .comm = "",
					 .exe = "",
					 .cgroup = "/a/b",
					 .server = "10.0.0.5:5432",
					 .server_port = 5432,
					 .database = "",
					 .db_user = "" };

		policy_mask_kernel(p, mrules, on_column, NULL);
		policy_mask_uids(p, on_uid, NULL);
		policy_mask_conn_rules(p, &c);
		policy_mask_workload_rules(p, &c);
		policy_mask_workload_rules(p, NULL);
		policy_mask_port_rules(p, 5432);
	}
	policy_free(p);
	return 0;
}
