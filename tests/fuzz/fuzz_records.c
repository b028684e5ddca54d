// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer: the daemon's whole input surface from the kernel. The input
 * is a sequence of ring buffer records ([u16 length][record]); each goes
 * through conns_record() as the agent's poll loop hands it over: gap
 * checks, the PostgreSQL parser and stitcher (plaintext and TLS streams),
 * libpg_query analysis, the guard's decisions under a policy, kernel
 * verdicts, serialisation. The header's version and size are made
 * consistent so that most inputs get past the first check.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze.h"
#include "conn.h"
#include "event.h"
#include "guard.h"
#include "identity.h"

static struct emitter *em;
static struct identity *id;
static struct sql_analyzer *an;
static struct guard *guard;

static const char policy[] = "version: 1\n"
			     "defaults: {action: allow, unparsed: block}\n"
			     "rules:\n"
			     "  - name: no-drop\n"
			     "    match: {verb: [DROP, TRUNCATE]}\n"
			     "    action: block\n"
			     "  - name: wipe\n"
			     "    match: {verb: [DELETE, UPDATE], without_where: true}\n"
			     "    action: require_approval\n"
			     "  - name: watch\n"
			     "    match: {objects: [accounts]}\n"
			     "    action: alert\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[4096], path[] = "/tmp/dbw-fuzz-policy-XXXXXX";
	int fd = mkstemp(path);

	if (fd < 0 || write(fd, policy, sizeof(policy) - 1) != sizeof(policy) - 1)
		abort();
	close(fd);
	em = emitter_new("file:/dev/null", err, sizeof(err));
	id = identity_new(NULL);
	an = sql_analyzer_new(0);
	guard = em ? guard_new(NULL, em, path, NULL, 0, err, sizeof(err)) : NULL;
	unlink(path);
	if (!em || !id || !an || !guard) {
		fprintf(stderr, "fuzz_records: setup: %s\n", err);
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conn_guard_ops ops = {};
	struct conn_table *t = conns_new(em, id, an, 64);
	uint8_t *rec = NULL;

	if (!t)
		return 0;
	guard_ops(guard, &ops);
	conns_set_guard(t, &ops);
	while (size >= 2) {
		size_t n = data[0] | (size_t)data[1] << 8;
		struct dbw_rec_hdr *h;

		data += 2;
		size -= 2;
		if (n > size)
			n = size;
		/* a copy: the pipeline may keep nothing of it, and ASan sees overreads */
		rec = realloc(rec, n ? n : 1);
		memcpy(rec, data, n);
		if (n >= sizeof(*h)) {
			h = (struct dbw_rec_hdr *)rec;
			h->version = DBW_ABI_VERSION;
			h->size = n;
		}
		conns_record(t, rec, n);
		data += n;
		size -= n;
	}
	conns_flush_all(t);
	emitter_flush(em);
	conns_free(t);
	free(rec);
	return 0;
}
