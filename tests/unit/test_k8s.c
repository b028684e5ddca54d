// SPDX-License-Identifier: GPL-2.0-only
/*
 * The Kubernetes half of identity without a server: a PodList as the API
 * writes it, watch events of every type (a 410 Gone among them), a watch
 * stream cut at every byte, the pod table with references held across a
 * DELETE, and the request URLs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "k8s.h"

#define UID_A "8f1c2b9e-1d2a-4c3b-9e8f-0a1b2c3d4e5f"
#define UID_B "0d3e5f7a-9b1c-4d2e-8f3a-5b7c9d1e3f5a"
#define CID_A "3b7f0d9a2c4e6f8a1b3d5e7f9a0c2e4f6a8b0d2f4a6c8e0a2b4d6f8a0c2e4f6a"
#define CID_I "1111111111111111111111111111111111111111111111111111111111111111"
#define CID_B "2222222222222222222222222222222222222222222222222222222222222222"

/* A PodList page as GET /api/v1/pods?fieldSelector=spec.nodeName=node-1 answers it. */
static const char POD_LIST[] =
	"{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"48213\","
	"\"continue\":\"eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDgyMTN9\"},\"items\":["
	"{\"metadata\":{\"name\":\"agent-7f9c\",\"generateName\":\"agent-\",\"namespace\":\"ai\","
	"\"uid\":\"" UID_A "\",\"resourceVersion\":\"48100\","
	"\"creationTimestamp\":\"2026-11-24T08:00:00Z\","
	"\"labels\":{\"app\":\"agent\",\"team\":\"data\",\"pod-template-hash\":\"7f9c\"},"
	"\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\",\"name\":"
	"\"agent-7f9c\",\"uid\":\"x\",\"controller\":true}]},"
	"\"spec\":{\"containers\":[{\"name\":\"agent\",\"image\":\"agent:1\"}],"
	"\"serviceAccountName\":\"sql-agent\",\"serviceAccount\":\"sql-agent\","
	"\"nodeName\":\"node-1\"},"
	"\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.7\","
	"\"initContainerStatuses\":[{\"name\":\"migrate\",\"containerID\":\"containerd://" CID_I
	"\",\"ready\":false}],"
	"\"containerStatuses\":[{\"name\":\"agent\",\"containerID\":\"containerd://" CID_A
	"\",\"ready\":true,\"restartCount\":0,\"image\":\"agent:1\"},"
	"{\"name\":\"sidecar\",\"containerID\":\"\",\"ready\":false}]}},"
	"{\"metadata\":{\"name\":\"shop-0\",\"namespace\":\"shop\",\"uid\":\"" UID_B "\","
	"\"resourceVersion\":\"48001\"},"
	"\"spec\":{\"serviceAccount\":\"legacy\",\"nodeName\":\"node-1\"},"
	"\"status\":{\"containerStatuses\":[{\"name\":\"web\",\"containerID\":\"cri-o://" CID_B
	"\"}]}},"
	"{\"metadata\":{\"name\":\"broken\",\"namespace\":\"x\"}},"
	"\"not an object\"]}";

static void test_pod_list(void **state)
{
	struct k8s_pod_list l;
	struct k8s_pod *a, *b;
	char err[256];

	assert_int_equal(k8s_parse_pod_list(POD_LIST, strlen(POD_LIST), &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.skipped, 2);
	assert_string_equal(l.rv, "48213");
	assert_string_equal(l.cont, "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDgyMTN9");
	a = l.pods[0];
	b = l.pods[1];
	assert_string_equal(a->uid, UID_A);
	assert_string_equal(a->ns, "ai");
	assert_string_equal(a->name, "agent-7f9c");
	assert_string_equal(a->service_account, "sql-agent");
	assert_string_equal(a->node, "node-1");
	assert_string_equal(a->rv, "48100");
	/* labels sorted by key */
	assert_int_equal(a->nlabels, 3);
	assert_string_equal(a->labels[0], "app");
	assert_string_equal(a->labels[2], "pod-template-hash");
	assert_string_equal(a->labels[4], "team");
	assert_string_equal(k8s_pod_label(a, "team"), "data");
	assert_null(k8s_pod_label(a, "tier"));
	/* containers by id, the scheme dropped; one not started has none */
	assert_int_equal(a->ncontainers, 2);
	assert_string_equal(k8s_pod_container(a, CID_A), "agent");
	assert_string_equal(k8s_pod_container(a, CID_I), "migrate");
	assert_null(k8s_pod_container(a, CID_B));
	assert_null(k8s_pod_container(a, ""));
	/* the deprecated serviceAccount spelling, no labels */
	assert_string_equal(b->service_account, "legacy");
	assert_int_equal(b->nlabels, 0);
	assert_string_equal(k8s_pod_container(b, CID_B), "web");
	/* a reference outlives the list */
	k8s_pod_get(a);
	k8s_pod_list_free(&l);
	assert_string_equal(a->name, "agent-7f9c");
	k8s_pod_put(a);
}

static void test_pod_list_errors(void **state)
{
	static const char status[] =
		"{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
		"\"message\":\"pods is forbidden: User \\\"system:serviceaccount:kube-system:x\\\" "
		"cannot list resource \\\"pods\\\"\",\"reason\":\"Forbidden\",\"code\":403}";
	static const char last[] = "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"7\"},"
				   "\"items\":[]}";
	struct k8s_pod_list l;
	char err[256];

	assert_int_equal(k8s_parse_pod_list(status, strlen(status), &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "Status 403 Forbidden: pods is forbidden"));
	assert_int_equal(k8s_parse_pod_list("{\"kind\":\"PodList\",", 18, &l, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "not JSON"));
	assert_int_equal(
		k8s_parse_pod_list("{\"kind\":\"Node\",\"items\":[]}", 26, &l, err, sizeof(err)),
		-1);
	assert_non_null(strstr(err, "not a PodList (kind Node)"));
	assert_int_equal(k8s_parse_pod_list("[]", 2, &l, err, sizeof(err)), -1);
	/* the last page: no continue token */
	assert_int_equal(k8s_parse_pod_list(last, strlen(last), &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	assert_null(l.cont);
	assert_string_equal(l.rv, "7");
	k8s_pod_list_free(&l);
}

#define POD_JSON(uid, name, labels)                                                             \
	"{\"metadata\":{\"name\":\"" name "\",\"namespace\":\"ai\",\"uid\":\"" uid "\","        \
	"\"resourceVersion\":\"5001\",\"labels\":" labels "},\"spec\":{\"serviceAccountName\":" \
	"\"sql-agent\",\"nodeName\":\"node-1\"},\"status\":{}}"

static const char *const STREAM[] = {
	"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\","
	"\"metadata\":{\"name\":\"agent-7f9c\",\"namespace\":\"ai\",\"uid\":\"" UID_A "\","
	"\"resourceVersion\":\"5001\",\"labels\":{\"app\":\"agent\"}},"
	"\"spec\":{\"serviceAccountName\":\"sql-agent\",\"nodeName\":\"node-1\"},\"status\":{}}}",
	"{\"type\":\"MODIFIED\",\"object\":" POD_JSON(UID_A, "agent-7f9c",
						      "{\"app\":\"other\"}") "}",
	"{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\","
	"\"metadata\":{\"resourceVersion\":\"5107\",\"annotations\":{\"k8s.io/"
	"initial-events-end\":\"true\"}}}}",
	"{\"type\":\"DELETED\",\"object\":" POD_JSON(UID_A, "agent-7f9c", "{}") "}",
	"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
	"\"status\":\"Failure\",\"message\":\"too old resource version: 4000 (5107)\","
	"\"reason\":\"Expired\",\"code\":410}}",
};

static void test_watch_events(void **state)
{
	struct k8s_event ev;
	char err[256];

	assert_int_equal(k8s_parse_event(STREAM[0], strlen(STREAM[0]), &ev, err, sizeof(err)), 0);
	assert_int_equal(ev.type, K8S_EV_ADDED);
	assert_string_equal(ev.rv, "5001");
	assert_string_equal(ev.pod->uid, UID_A);
	assert_string_equal(k8s_pod_label(ev.pod, "app"), "agent");
	k8s_pod_put(ev.pod);
	assert_int_equal(k8s_parse_event(STREAM[1], strlen(STREAM[1]), &ev, err, sizeof(err)), 0);
	assert_int_equal(ev.type, K8S_EV_MODIFIED);
	assert_string_equal(k8s_pod_label(ev.pod, "app"), "other");
	k8s_pod_put(ev.pod);
	assert_int_equal(k8s_parse_event(STREAM[2], strlen(STREAM[2]), &ev, err, sizeof(err)), 0);
	assert_int_equal(ev.type, K8S_EV_BOOKMARK);
	assert_null(ev.pod);
	assert_string_equal(ev.rv, "5107");
	assert_int_equal(k8s_parse_event(STREAM[3], strlen(STREAM[3]), &ev, err, sizeof(err)), 0);
	assert_int_equal(ev.type, K8S_EV_DELETED);
	k8s_pod_put(ev.pod);
	assert_int_equal(k8s_parse_event(STREAM[4], strlen(STREAM[4]), &ev, err, sizeof(err)), 0);
	assert_int_equal(ev.type, K8S_EV_ERROR);
	assert_int_equal(ev.code, 410);
	assert_string_equal(ev.message, "too old resource version: 4000 (5107)");
	assert_null(ev.pod);
	/* what a watch must skip */
	assert_int_equal(k8s_parse_event("{\"type\":\"ADDED\"}", 16, &ev, err, sizeof(err)), -1);
	assert_int_equal(
		k8s_parse_event("{\"type\":\"SYNC\",\"object\":{}}", 27, &ev, err, sizeof(err)),
		-1);
	assert_non_null(strstr(err, "unknown type 'SYNC'"));
	assert_int_equal(k8s_parse_event("{\"type\":\"ADDED\",\"object\":{\"metadata\":{}}}", 40,
					 &ev, err, sizeof(err)),
			 -1);
	assert_int_equal(k8s_parse_event("not json", 8, &ev, err, sizeof(err)), -1);
}

struct collected {
	char lines[8][1024];
	int n;
};

static void collect(void *ctx, const char *line, size_t len)
{
	struct collected *c = ctx;

	assert_true(c->n < 8 && len < sizeof(c->lines[0]));
	memcpy(c->lines[c->n], line, len);
	c->lines[c->n++][len] = 0;
}

/* The stream cut into pieces of every size, and at random: the same lines. */
static void test_lines_any_cut(void **state)
{
	char stream[4096];
	size_t n = 0;
	unsigned seed = 7;

	for (size_t i = 0; i < sizeof(STREAM) / sizeof(STREAM[0]); i++)
		n += sprintf(stream + n, "%s\n", STREAM[i]);
	for (size_t piece = 1; piece <= n; piece++) {
		struct k8s_lines lb = { .max = 1 << 20 };
		struct collected c = {};

		for (size_t off = 0; off < n; off += piece)
			assert_int_equal(k8s_lines_feed(&lb, stream + off,
							off + piece > n ? n - off : piece, collect,
							&c),
					 0);
		assert_int_equal(c.n, 5);
		for (int i = 0; i < 5; i++)
			assert_string_equal(c.lines[i], STREAM[i]);
		k8s_lines_free(&lb);
	}
	for (int round = 0; round < 500; round++) {
		struct k8s_lines lb = { .max = 1 << 20 };
		struct collected c = {};

		for (size_t off = 0; off < n;) {
			size_t k = 1 + rand_r(&seed) % 97;

			k = off + k > n ? n - off : k;
			assert_int_equal(k8s_lines_feed(&lb, stream + off, k, collect, &c), 0);
			off += k;
		}
		assert_int_equal(c.n, 5);
		assert_string_equal(c.lines[4], STREAM[4]);
		k8s_lines_free(&lb);
	}
}

static void test_lines_too_long(void **state)
{
	struct k8s_lines lb = { .max = 16 };
	struct collected c = {};

	assert_int_equal(k8s_lines_feed(&lb, "short\n", 6, collect, &c), 0);
	assert_int_equal(k8s_lines_feed(&lb, "0123456789", 10, collect, &c), 0);
	assert_int_equal(k8s_lines_feed(&lb, "0123456789\n", 11, collect, &c), -1);
	assert_int_equal(c.n, 1);
	/* empty lines (keep-alive newlines) are no events */
	lb.len = 0;
	assert_int_equal(k8s_lines_feed(&lb, "\n\nx\n", 4, collect, &c), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.lines[1], "x");
	k8s_lines_free(&lb);
}

static struct k8s_event event(int type, const char *stream_line)
{
	struct k8s_event ev;
	char err[256];

	assert_int_equal(k8s_parse_event(stream_line, strlen(stream_line), &ev, err, sizeof(err)),
			 0);
	assert_int_equal(ev.type, type);
	return ev;
}

static void test_table(void **state)
{
	struct k8s_table *t = k8s_table_new();
	struct k8s_event added = event(K8S_EV_ADDED, STREAM[0]);
	struct k8s_event modified = event(K8S_EV_MODIFIED, STREAM[1]);
	struct k8s_event deleted = event(K8S_EV_DELETED, STREAM[3]);
	struct k8s_pod_list l;
	struct k8s_pod *held, *p;
	char err[256];

	assert_null(k8s_table_get(t, UID_A));
	k8s_table_apply(t, &added);
	assert_int_equal(k8s_table_generation(t), 1);
	held = k8s_table_get(t, UID_A);
	assert_string_equal(k8s_pod_label(held, "app"), "agent");
	k8s_table_apply(t, &modified);
	p = k8s_table_get(t, UID_A);
	/* a new pod object: the old one, still held, did not change under its holder */
	assert_ptr_not_equal(p, held);
	assert_string_equal(k8s_pod_label(p, "app"), "other");
	assert_string_equal(k8s_pod_label(held, "app"), "agent");
	k8s_pod_put(p);
	k8s_table_apply(t, &deleted);
	assert_null(k8s_table_get(t, UID_A));
	assert_int_equal(k8s_table_count(t), 0);
	assert_string_equal(held->name, "agent-7f9c");
	k8s_pod_put(held);
	/* deleting what is not there changes nothing */
	k8s_table_apply(t, &deleted);
	assert_int_equal(k8s_table_generation(t), 3);
	/* a re-list replaces everything */
	k8s_table_apply(t, &added);
	assert_int_equal(k8s_parse_pod_list(POD_LIST, strlen(POD_LIST), &l, err, sizeof(err)), 0);
	k8s_table_replace(t, l.pods, l.n);
	k8s_pod_list_free(&l);
	assert_int_equal(k8s_table_count(t), 2);
	p = k8s_table_get(t, UID_A);
	assert_string_equal(p->service_account, "sql-agent");
	assert_int_equal(p->nlabels, 3);
	k8s_pod_put(p);
	p = k8s_table_get(t, UID_B);
	assert_string_equal(p->ns, "shop");
	k8s_pod_put(p);
	k8s_pod_put(added.pod);
	k8s_pod_put(modified.pod);
	k8s_pod_put(deleted.pod);
	k8s_table_free(t);
}

/* Many pods: every one found again (the buckets chain). */
static void test_table_many(void **state)
{
	struct k8s_table *t = k8s_table_new();
	char line[1024], uid[40];

	for (int i = 0; i < 3000; i++) {
		struct k8s_event ev;

		snprintf(uid, sizeof(uid), "00000000-0000-4000-8000-%012d", i);
		snprintf(line, sizeof(line),
			 "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"p%d\","
			 "\"namespace\":\"n\",\"uid\":\"%s\"}}}",
			 i, uid);
		ev = event(K8S_EV_ADDED, line);
		k8s_table_apply(t, &ev);
		k8s_pod_put(ev.pod);
	}
	assert_int_equal(k8s_table_count(t), 3000);
	for (int i = 0; i < 3000; i += 7) {
		struct k8s_pod *p;
		char name[16];

		snprintf(uid, sizeof(uid), "00000000-0000-4000-8000-%012d", i);
		snprintf(name, sizeof(name), "p%d", i);
		p = k8s_table_get(t, uid);
		assert_non_null(p);
		assert_string_equal(p->name, name);
		k8s_pod_put(p);
	}
	k8s_table_free(t);
}

static void test_urls(void **state)
{
	char *u = k8s_pods_url("https://10.96.0.1:443/", "node-1", false, NULL, NULL);

	assert_string_equal(u, "https://10.96.0.1:443/api/v1/pods?fieldSelector=spec.nodeName%3D"
			       "node-1&limit=500");
	free(u);
	u = k8s_pods_url("https://api", "a b/c", false, NULL, "tok+en=");
	assert_string_equal(u, "https://api/api/v1/pods?fieldSelector=spec.nodeName%3Da%20b%2Fc"
			       "&limit=500&continue=tok%2Ben%3D");
	free(u);
	u = k8s_pods_url("https://api", "node-1", true, "48213", NULL);
	assert_string_equal(u, "https://api/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1"
			       "&watch=1&allowWatchBookmarks=true&timeoutSeconds=300"
			       "&resourceVersion=48213");
	free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pod_list),       cmocka_unit_test(test_pod_list_errors),
		cmocka_unit_test(test_watch_events),   cmocka_unit_test(test_lines_any_cut),
		cmocka_unit_test(test_lines_too_long), cmocka_unit_test(test_table),
		cmocka_unit_test(test_table_many),     cmocka_unit_test(test_urls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
