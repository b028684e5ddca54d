/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The pods of this node, from the Kubernetes API: list, then watch from the
 * list's resourceVersion, re-list when the API says 410 Gone. HTTPS with the
 * certificate checked against the cluster CA, a bearer token read anew for
 * each request (service-account tokens rotate).
 *
 * The client runs in its own thread and never blocks the caller: the
 * daemon looks pods up by uid in a table shared under a mutex held only to
 * swap a pointer or take a reference. Pods are immutable once built and
 * reference counted: a MODIFIED event makes a new one, and whoever holds
 * the old one keeps a consistent view until it lets go.
 *
 * The parsing half (PodList, watch events, the line splitter, the table)
 * is pure and unit-tested without a server.
 */
#ifndef DBW_K8S_H
#define DBW_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where the in-cluster configuration lives (every pod gets it mounted). */
#define K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

struct k8s_container {
	char *id; /* "containerd://<id>" without the scheme */
	char *name;
};

struct k8s_pod {
	int refs; /* atomic */
	char *uid, *ns, *name, *service_account, *node, *rv;
	char **labels; /* key, value, key, value, ... sorted by key */
	size_t nlabels; /* pairs */
	struct k8s_container *containers;
	size_t ncontainers;
};

/* A reference more, one less (the last one frees the pod). NULL is fine. */
struct k8s_pod *k8s_pod_get(struct k8s_pod *p);
void k8s_pod_put(struct k8s_pod *p);

/* The name of the container with this id in pod p (status), or NULL. */
const char *k8s_pod_container(const struct k8s_pod *p, const char *container_id);

/* The value of label key, or NULL. */
const char *k8s_pod_label(const struct k8s_pod *p, const char *key);

/* ---- parsing (pure) ---------------------------------------------------------- */

/* One page of a PodList. */
struct k8s_pod_list {
	struct k8s_pod **pods;
	size_t n;
	size_t skipped; /* items without a uid, name or namespace */
	char rv[64]; /* metadata.resourceVersion: where a watch resumes */
	char *cont; /* metadata.continue: the next page, NULL on the last */
};

/*
 * Parse a PodList body. Returns 0 and fills out (free with
 * k8s_pod_list_free), or -1 with a one-line reason in err.
 */
int k8s_parse_pod_list(const char *buf, size_t len, struct k8s_pod_list *out, char *err,
		       size_t errlen);
void k8s_pod_list_free(struct k8s_pod_list *l);

enum k8s_event_type {
	K8S_EV_ADDED = 1,
	K8S_EV_MODIFIED = 2,
	K8S_EV_DELETED = 3,
	K8S_EV_BOOKMARK = 4, /* only a new resourceVersion */
	K8S_EV_ERROR = 5, /* a Status: code 410 means re-list */
};

struct k8s_event {
	int type; /* enum k8s_event_type */
	struct k8s_pod *pod; /* ADDED, MODIFIED, DELETED: a reference, the caller's */
	char rv[64]; /* the object's resourceVersion, "" for an ERROR */
	int code; /* ERROR: the Status code (410: the resourceVersion is gone) */
	char message[256]; /* ERROR: the Status message */
};

/*
 * Parse one line of a watch stream ({"type":"ADDED","object":{...}}).
 * Returns 0, or -1 with err (the line is skipped, the watch goes on).
 */
int k8s_parse_event(const char *line, size_t len, struct k8s_event *ev, char *err, size_t errlen);

/*
 * A watch stream arrives in pieces that cut lines anywhere: collect them
 * and hand each whole line to cb. Lines longer than max are an error
 * (the stream cannot be followed: the caller starts over).
 */
struct k8s_lines {
	char *buf;
	size_t len, cap, max;
};

/* Feed n bytes; cb gets each line without its '\n'. 0, or -1 on a line over max. */
int k8s_lines_feed(struct k8s_lines *lb, const char *data, size_t n,
		   void (*cb)(void *ctx, const char *line, size_t len), void *ctx);
void k8s_lines_free(struct k8s_lines *lb);

/*
 * The pods URL: {api}/api/v1/pods?fieldSelector=spec.nodeName=<node>, a
 * list page (limit, continue) or a watch from rv. Returns a malloc'd string.
 */
char *k8s_pods_url(const char *api, const char *node, bool watch, const char *rv, const char *cont);

/* ---- the table ---------------------------------------------------------------- */

struct k8s_table;

struct k8s_table *k8s_table_new(void);
void k8s_table_free(struct k8s_table *t);
/* The pod with this uid, a reference (k8s_pod_put it), or NULL. */
struct k8s_pod *k8s_table_get(struct k8s_table *t, const char *uid);
/* Apply an ADDED / MODIFIED / DELETED event (the table takes its own reference). */
void k8s_table_apply(struct k8s_table *t, const struct k8s_event *ev);
/* Replace everything with the pods of a list (references taken). */
void k8s_table_replace(struct k8s_table *t, struct k8s_pod *const *pods, size_t n);
size_t k8s_table_count(const struct k8s_table *t);
/* Grows by one on every change. */
uint64_t k8s_table_generation(const struct k8s_table *t);

/* ---- the client ---------------------------------------------------------------- */

struct k8s_opts {
	const char *api; /* https://host:port */
	const char *ca_file; /* PEM bundle the API server's certificate must chain to */
	const char *token_file; /* bearer token, read for every request; NULL: none */
	const char *node; /* this node's name: only its pods are listed */
};

enum k8s_state {
	K8S_STARTING = 0, /* no answer yet */
	K8S_UP = 1, /* listed, watching */
	K8S_DOWN = 2, /* the last request failed: pods known stay, new ones wait */
};

struct k8s_stats {
	uint64_t lists; /* PodList pages fetched */
	uint64_t watches; /* watch requests answered 200 */
	uint64_t events; /* watch events applied */
	uint64_t relists; /* 410 Gone: the resourceVersion expired, listed again */
	uint64_t errors; /* requests that failed (connect, TLS, HTTP status, JSON) */
	uint64_t pods; /* in the table now */
};

struct k8s;

/*
 * Fill o from the in-cluster configuration (KUBERNETES_SERVICE_HOST/PORT
 * and K8S_SA_DIR) where the caller left a field NULL, and the node from
 * NODE_NAME or the host name. bufs hold the strings. Returns true when an
 * API is configured (flags or in cluster).
 */
bool k8s_config(struct k8s_opts *o, char *api_buf, size_t api_len, char *node_buf, size_t node_len);

/* Start the client thread. NULL with a one-line reason in err. */
struct k8s *k8s_start(const struct k8s_opts *o, char *err, size_t errlen);
/* Stop the thread (within about a second) and free everything. */
void k8s_stop(struct k8s *k);

/* The pod with this uid (a reference), or NULL. Never blocks for long. */
struct k8s_pod *k8s_get(struct k8s *k, const char *uid);
uint64_t k8s_generation(struct k8s *k);
/* The state, and the last error ("" if none) into err. */
enum k8s_state k8s_state(struct k8s *k, char *err, size_t errlen);
void k8s_get_stats(struct k8s *k, struct k8s_stats *st);
const char *k8s_api(const struct k8s *k);

#endif /* DBW_K8S_H */
