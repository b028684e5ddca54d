// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer: the TLS discovery reads ELF files that containers ship (their
 * own libssl, any executable): a hostile one must not crash the agent.
 * tls_find_sites() over arbitrary bytes (libelf and Capstone underneath).
 */
#include <stdint.h>
#include <unistd.h>
#include <sys/mman.h>

#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_sites sites;
	char why[128];
	int fd = memfd_create("elf", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size)
		tls_find_sites(fd, &sites, why, sizeof(why));
	close(fd);
	return 0;
}
