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
	policy_free(p);
	return 0;
}
