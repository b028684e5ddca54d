// SPDX-License-Identifier: GPL-2.0-only
/* The pods of this node from the Kubernetes API: parsing, the table, the client thread. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <jansson.h>

#include "k8s.h"

#define K8S_PAGE	500 /* pods per list page */
#define K8S_MAX_BODY	(64 << 20) /* a list page larger than this is refused */
#define K8S_MAX_LINE	(8 << 20) /* one watch event */
#define K8S_WATCH_S	300 /* the server ends each watch after this; we resume */
#define K8S_BACKOFF_MS	500 /* first retry after a failure, doubling ... */
#define K8S_BACKOFF_MAX 5000 /* ... up to this */
#define K8S_BUCKETS	1024

/* ---- pods ------------------------------------------------------------------------ */

struct k8s_pod *k8s_pod_get(struct k8s_pod *p)
{
	if (p)
		__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

void k8s_pod_put(struct k8s_pod *p)
{
	if (!p || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL))
		return;
	free(p->uid);
	free(p->ns);
	free(p->name);
	free(p->service_account);
	free(p->node);
	free(p->rv);
	for (size_t i = 0; i < 2 * p->nlabels; i++)
		free(p->labels[i]);
	free(p->labels);
	for (size_t i = 0; i < p->ncontainers; i++) {
		free(p->containers[i].id);
		free(p->containers[i].name);
	}
	free(p->containers);
	free(p);
}

const char *k8s_pod_container(const struct k8s_pod *p, const char *container_id)
{
	for (size_t i = 0; p && container_id && i < p->ncontainers; i++)
		if (!strcmp(p->containers[i].id, container_id))
			return p->containers[i].name;
	return NULL;
}

const char *k8s_pod_label(const struct k8s_pod *p, const char *key)
{
	for (size_t i = 0; p && i < p->nlabels; i++)
		if (!strcmp(p->labels[2 * i], key))
			return p->labels[2 * i + 1];
	return NULL;
}

/* obj[key] as a string, or NULL when absent or not a string. */
static const char *str_at(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int cmp_label(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The containers of one status list ({name, containerID: "runtime://id"}). */
static int add_containers(struct k8s_pod *p, json_t *statuses)
{
	size_t i;
	json_t *cs;

	if (!json_is_array(statuses))
		return 0;
	json_array_foreach(statuses, i, cs)
	{
		const char *name = str_at(cs, "name"), *id = str_at(cs, "containerID"), *sep;
		struct k8s_container *nc;

		if (!name || !id || !*id)
			continue; /* not started yet: no id */
		sep = strstr(id, "://");
		nc = realloc(p->containers, (p->ncontainers + 1) * sizeof(*nc));
		if (!nc)
			return -1;
		p->containers = nc;
		nc[p->ncontainers].id = strdup(sep ? sep + 3 : id);
		nc[p->ncontainers].name = strdup(name);
		if (!nc[p->ncontainers].id || !nc[p->ncontainers].name) {
			free(nc[p->ncontainers].id);
			free(nc[p->ncontainers].name);
			return -1;
		}
		p->ncontainers++;
	}
	return 0;
}

/*
 * A pod object (v1.Pod) into a k8s_pod with one reference. NULL when it
 * lacks a uid, name or namespace, or when memory runs out.
 */
static struct k8s_pod *pod_from_json(json_t *o)
{
	json_t *md = json_object_get(o, "metadata"), *spec = json_object_get(o, "spec");
	json_t *status = json_object_get(o, "status"), *labels = json_object_get(md, "labels");
	const char *uid = str_at(md, "uid"), *name = str_at(md, "name");
	const char *ns = str_at(md, "namespace"), *sa = str_at(spec, "serviceAccountName");
	struct k8s_pod *p;
	const char *k;
	json_t *v;

	if (!uid || !*uid || !name || !ns)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->refs = 1;
	/* serviceAccount is the deprecated spelling of the same field */
	sa = sa ? sa : str_at(spec, "serviceAccount");
	p->uid = strdup(uid);
	p->name = strdup(name);
	p->ns = strdup(ns);
	p->service_account = strdup(sa ? sa : "");
	p->node = strdup(str_at(spec, "nodeName") ? str_at(spec, "nodeName") : "");
	p->rv = strdup(str_at(md, "resourceVersion") ? str_at(md, "resourceVersion") : "");
	if (!p->uid || !p->name || !p->ns || !p->service_account || !p->node || !p->rv)
		goto fail;
	if (json_is_object(labels) && json_object_size(labels)) {
		p->labels = calloc(2 * json_object_size(labels), sizeof(char *));
		if (!p->labels)
			goto fail;
		json_object_foreach(labels, k, v)
		{
			if (!json_is_string(v))
				continue;
			p->labels[2 * p->nlabels] = strdup(k);
			p->labels[2 * p->nlabels + 1] = strdup(json_string_value(v));
			p->nlabels++;
			if (!p->labels[2 * p->nlabels - 2] || !p->labels[2 * p->nlabels - 1])
				goto fail;
		}
		qsort(p->labels, p->nlabels, 2 * sizeof(char *), cmp_label);
	}
	if (add_containers(p, json_object_get(status, "initContainerStatuses")) ||
	    add_containers(p, json_object_get(status, "containerStatuses")) ||
	    add_containers(p, json_object_get(status, "ephemeralContainerStatuses")))
		goto fail;
	return p;
fail:
	k8s_pod_put(p);
	return NULL;
}

/* ---- parsing ----------------------------------------------------------------------- */

/* A Status object's words, for an error line. */
static void status_reason(json_t *o, char *err, size_t errlen)
{
	const char *msg = str_at(o, "message"), *reason = str_at(o, "reason");

	snprintf(err, errlen, "Status %lld %s: %s",
		 (long long)json_integer_value(json_object_get(o, "code")), reason ? reason : "?",
		 msg ? msg : "");
}

int k8s_parse_pod_list(const char *buf, size_t len, struct k8s_pod_list *out, char *err,
		       size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb(buf, len, 0, &je), *items, *item;
	const char *kind, *rv, *cont;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (!root) {
		snprintf(err, errlen, "PodList: not JSON (%s at %d:%d)", je.text, je.line,
			 je.column);
		return -1;
	}
	kind = str_at(root, "kind");
	if (kind && !strcmp(kind, "Status")) {
		status_reason(root, err, errlen);
		goto fail;
	}
	items = json_object_get(root, "items");
	if ((kind && strcmp(kind, "PodList")) || !json_is_array(items)) {
		snprintf(err, errlen, "not a PodList (kind %s)", kind ? kind : "none");
		goto fail;
	}
	rv = str_at(json_object_get(root, "metadata"), "resourceVersion");
	cont = str_at(json_object_get(root, "metadata"), "continue");
	snprintf(out->rv, sizeof(out->rv), "%s", rv ? rv : "");
	if (cont && *cont && !(out->cont = strdup(cont)))
		goto oom;
	out->pods = calloc(json_array_size(items) + 1, sizeof(*out->pods));
	if (!out->pods)
		goto oom;
	json_array_foreach(items, i, item)
	{
		struct k8s_pod *p = json_is_object(item) ? pod_from_json(item) : NULL;

		if (p)
			out->pods[out->n++] = p;
		else
			out->skipped++;
	}
	json_decref(root);
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	json_decref(root);
	k8s_pod_list_free(out);
	return -1;
}

void k8s_pod_list_free(struct k8s_pod_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		k8s_pod_put(l->pods[i]);
	free(l->pods);
	free(l->cont);
	memset(l, 0, sizeof(*l));
}

int k8s_parse_event(const char *line, size_t len, struct k8s_event *ev, char *err, size_t errlen)
{
	static const char *const types[] = { [K8S_EV_ADDED] = "ADDED",
					     [K8S_EV_MODIFIED] = "MODIFIED",
					     [K8S_EV_DELETED] = "DELETED",
					     [K8S_EV_BOOKMARK] = "BOOKMARK",
					     [K8S_EV_ERROR] = "ERROR" };
	json_error_t je;
	json_t *root = json_loadb(line, len, 0, &je), *obj;
	const char *type, *rv;

	memset(ev, 0, sizeof(*ev));
	if (!root) {
		snprintf(err, errlen, "watch event: not JSON (%s)", je.text);
		return -1;
	}
	type = str_at(root, "type");
	obj = json_object_get(root, "object");
	for (int t = K8S_EV_ADDED; type && t <= K8S_EV_ERROR; t++)
		if (!strcmp(type, types[t]))
			ev->type = t;
	if (!ev->type || !json_is_object(obj)) {
		snprintf(err, errlen, "watch event: unknown type '%s' or no object",
			 type ? type : "");
		json_decref(root);
		return -1;
	}
	if (ev->type == K8S_EV_ERROR) {
		const char *msg = str_at(obj, "message");

		ev->code = (int)json_integer_value(json_object_get(obj, "code"));
		snprintf(ev->message, sizeof(ev->message), "%s", msg ? msg : "");
		json_decref(root);
		return 0;
	}
	rv = str_at(json_object_get(obj, "metadata"), "resourceVersion");
	snprintf(ev->rv, sizeof(ev->rv), "%s", rv ? rv : "");
	if (ev->type != K8S_EV_BOOKMARK) {
		ev->pod = pod_from_json(obj);
		if (!ev->pod) {
			snprintf(err, errlen,
				 "watch event %s: a pod without uid, name or namespace", type);
			json_decref(root);
			return -1;
		}
	}
	json_decref(root);
	return 0;
}

int k8s_lines_feed(struct k8s_lines *lb, const char *data, size_t n,
		   void (*cb)(void *ctx, const char *line, size_t len), void *ctx)
{
	while (n) {
		const char *nl = memchr(data, '\n', n);
		size_t take = nl ? (size_t)(nl - data) : n;

		if (lb->len + take > lb->max)
			return -1;
		if (!nl && !lb->len) {
			/* a line's start: keep it for the pieces that follow */
		} else if (nl && !lb->len) {
			/* a whole line in this piece: no copy */
			if (take)
				cb(ctx, data, take);
			data += take + 1;
			n -= take + 1;
			continue;
		}
		if (lb->len + take > lb->cap) {
			size_t ncap = lb->cap ? lb->cap : 4096;
			char *nb;

			while (ncap < lb->len + take)
				ncap *= 2;
			nb = realloc(lb->buf, ncap);
			if (!nb)
				return -1;
			lb->buf = nb;
			lb->cap = ncap;
		}
		memcpy(lb->buf + lb->len, data, take);
		lb->len += take;
		data += take;
		n -= take;
		if (nl) {
			cb(ctx, lb->buf, lb->len);
			lb->len = 0;
			data++;
			n--;
		}
	}
	return 0;
}

void k8s_lines_free(struct k8s_lines *lb)
{
	free(lb->buf);
	lb->buf = NULL;
	lb->len = lb->cap = 0;
}

char *k8s_pods_url(const char *api, const char *node, bool watch, const char *rv, const char *cont)
{
	char *sel = curl_easy_escape(NULL, node ? node : "", 0);
	char *c = cont ? curl_easy_escape(NULL, cont, 0) : NULL;
	char *r = rv ? curl_easy_escape(NULL, rv, 0) : NULL;
	size_t alen = strlen(api);
	char *url = NULL;
	int e;

	while (alen && api[alen - 1] == '/')
		alen--;
	if (!sel || (cont && !c) || (rv && !r))
		e = -1;
	else if (watch)
		e = asprintf(&url,
			     "%.*s/api/v1/pods?fieldSelector=spec.nodeName%%3D%s&watch=1"
			     "&allowWatchBookmarks=true&timeoutSeconds=%d%s%s",
			     (int)alen, api, sel, K8S_WATCH_S, r ? "&resourceVersion=" : "",
			     r ? r : "");
	else
		e = asprintf(&url,
			     "%.*s/api/v1/pods?fieldSelector=spec.nodeName%%3D%s&limit=%d%s%s",
			     (int)alen, api, sel, K8S_PAGE, c ? "&continue=" : "", c ? c : "");
	curl_free(sel);
	curl_free(c);
	curl_free(r);
	return e < 0 ? NULL : url;
}

/* ---- the table -------------------------------------------------------------------- */

struct tnode {
	struct k8s_pod *pod;
	struct tnode *next;
};

struct k8s_table {
	struct tnode *b[K8S_BUCKETS];
	size_t n;
	uint64_t gen;
};

static size_t uid_bucket(const char *uid)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *uid; uid++)
		h = (h ^ (uint8_t)*uid) * 0x100000001b3ULL;
	return h % K8S_BUCKETS;
}

struct k8s_table *k8s_table_new(void)
{
	return calloc(1, sizeof(struct k8s_table));
}

static void table_clear(struct k8s_table *t)
{
	for (size_t i = 0; i < K8S_BUCKETS; i++) {
		while (t->b[i]) {
			struct tnode *n = t->b[i];

			t->b[i] = n->next;
			k8s_pod_put(n->pod);
			free(n);
		}
	}
	t->n = 0;
}

void k8s_table_free(struct k8s_table *t)
{
	if (!t)
		return;
	table_clear(t);
	free(t);
}

static struct tnode **table_slot(struct k8s_table *t, const char *uid)
{
	struct tnode **pp = &t->b[uid_bucket(uid)];

	while (*pp && strcmp((*pp)->pod->uid, uid))
		pp = &(*pp)->next;
	return pp;
}

struct k8s_pod *k8s_table_get(struct k8s_table *t, const char *uid)
{
	struct tnode **pp = table_slot(t, uid);

	return *pp ? k8s_pod_get((*pp)->pod) : NULL;
}

/* Put pod in the table (a reference taken), replacing the one of the same uid. */
static void table_put(struct k8s_table *t, struct k8s_pod *pod)
{
	struct tnode **pp = table_slot(t, pod->uid), *n;

	if (*pp) {
		k8s_pod_put((*pp)->pod);
		(*pp)->pod = k8s_pod_get(pod);
		return;
	}
	n = malloc(sizeof(*n));
	if (!n)
		return; /* this pod stays unknown: its events show the cgroup identity */
	n->pod = k8s_pod_get(pod);
	n->next = NULL;
	*pp = n;
	t->n++;
}

void k8s_table_apply(struct k8s_table *t, const struct k8s_event *ev)
{
	struct tnode **pp, *n;

	if (!ev->pod)
		return;
	if (ev->type == K8S_EV_ADDED || ev->type == K8S_EV_MODIFIED) {
		table_put(t, ev->pod);
	} else if (ev->type == K8S_EV_DELETED) {
		pp = table_slot(t, ev->pod->uid);
		n = *pp;
		if (!n)
			return;
		*pp = n->next;
		k8s_pod_put(n->pod);
		free(n);
		t->n--;
	} else {
		return;
	}
	t->gen++;
}

void k8s_table_replace(struct k8s_table *t, struct k8s_pod *const *pods, size_t n)
{
	table_clear(t);
	for (size_t i = 0; i < n; i++)
		table_put(t, pods[i]);
	t->gen++;
}

size_t k8s_table_count(const struct k8s_table *t)
{
	return t->n;
}

uint64_t k8s_table_generation(const struct k8s_table *t)
{
	return t->gen;
}

/* ---- the client -------------------------------------------------------------------- */

struct k8s {
	char *api, *ca_file, *token_file, *node;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* under mu */
	int stop; /* also read without it by the transfer callbacks (atomic) */
	struct k8s_table *table;
	enum k8s_state state;
	char error[256];
	struct k8s_stats st;
	/* the thread's own */
	CURL *curl;
	char rv[64];
	struct k8s_lines lines;
	char *body;
	size_t body_len;
	bool streaming, watch_up, relist;
	long code;
};

bool k8s_config(struct k8s_opts *o, char *api_buf, size_t api_len, char *node_buf, size_t node_len)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	const char *node = getenv("NODE_NAME");

	if (!o->api && host && *host) {
		/* in a pod: the API's service address, the service account's CA and token */
		snprintf(api_buf, api_len, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s",
			 host, port && *port ? port : "443");
		o->api = api_buf;
	}
	if (o->api && !o->ca_file && !access(K8S_SA_DIR "/ca.crt", R_OK))
		o->ca_file = K8S_SA_DIR "/ca.crt";
	if (o->api && !o->token_file && !access(K8S_SA_DIR "/token", R_OK))
		o->token_file = K8S_SA_DIR "/token";
	if (!o->node) {
		/* the kubelet names its node after the host unless told otherwise */
		if (node && *node)
			snprintf(node_buf, node_len, "%s", node);
		else if (gethostname(node_buf, node_len))
			snprintf(node_buf, node_len, "localhost");
		o->node = node_buf;
	}
	return o->api != NULL;
}

static void set_state(struct k8s *k, enum k8s_state s, const char *err)
{
	pthread_mutex_lock(&k->mu);
	k->state = s;
	if (err)
		snprintf(k->error, sizeof(k->error), "%s", err);
	if (s == K8S_DOWN)
		k->st.errors++;
	pthread_mutex_unlock(&k->mu);
}

static bool stopping(struct k8s *k)
{
	return __atomic_load_n(&k->stop, __ATOMIC_RELAXED);
}

/* Sleep ms, or less when asked to stop. */
static void nap(struct k8s *k, unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&k->mu);
	while (!k->stop && pthread_cond_timedwait(&k->cv, &k->mu, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&k->mu);
}

/* One watch line: apply it; an ERROR 410 ends the watch for a re-list. */
static void on_line(void *ctx, const char *line, size_t len)
{
	struct k8s *k = ctx;
	struct k8s_event ev;
	char err[256];

	if (k->relist)
		return;
	if (k8s_parse_event(line, len, &ev, err, sizeof(err))) {
		pthread_mutex_lock(&k->mu);
		k->st.errors++;
		pthread_mutex_unlock(&k->mu);
		return;
	}
	if (ev.type == K8S_EV_ERROR) {
		/* 410: our resourceVersion is older than the API keeps; anything else, too */
		k->relist = true;
		return;
	}
	if (*ev.rv)
		snprintf(k->rv, sizeof(k->rv), "%s", ev.rv);
	if (ev.pod) {
		pthread_mutex_lock(&k->mu);
		k8s_table_apply(k->table, &ev);
		k->st.events++;
		k->st.pods = k8s_table_count(k->table);
		pthread_mutex_unlock(&k->mu);
		k8s_pod_put(ev.pod);
	}
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct k8s *k = ctx;
	size_t n = size * nmemb;

	if (k->streaming && k->code == 200) {
		if (k8s_lines_feed(&k->lines, data, n, on_line, k))
			return 0; /* a line past K8S_MAX_LINE: start over */
		return k->relist ? 0 : n;
	}
	if (k->body_len + n > K8S_MAX_BODY)
		return 0;
	{
		char *nb = realloc(k->body, k->body_len + n + 1);

		if (!nb)
			return 0;
		k->body = nb;
	}
	memcpy(k->body + k->body_len, data, n);
	k->body_len += n;
	k->body[k->body_len] = 0;
	return n;
}

/* Headers: at their end the status is known; a watch answered 200 is up. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct k8s *k = ctx;
	size_t n = size * nmemb;

	if (n <= 2 && (data[0] == '\r' || data[0] == '\n')) {
		curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &k->code);
		if (k->streaming && k->code == 200 && !k->watch_up) {
			k->watch_up = true;
			pthread_mutex_lock(&k->mu);
			k->st.watches++;
			k->state = K8S_UP;
			pthread_mutex_unlock(&k->mu);
		}
	}
	return n;
}

static int on_progress(void *ctx, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	return stopping(ctx); /* non-zero aborts the transfer */
}

/* "Authorization: Bearer <token>" from the token file, or "" without one. */
static void auth_header(const struct k8s *k, char *buf, size_t len)
{
	char tok[16384];
	size_t n = 0;
	FILE *f = k->token_file ? fopen(k->token_file, "re") : NULL;

	buf[0] = 0;
	if (!f)
		return;
	n = fread(tok, 1, sizeof(tok) - 1, f);
	fclose(f);
	while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
		n--;
	tok[n] = 0;
	if (n)
		snprintf(buf, len, "Authorization: Bearer %s", tok);
}

/*
 * GET url. The body goes to k->body, or line by line to on_line when
 * streaming. Returns the curl result; k->code holds the HTTP status.
 */
static CURLcode http_get(struct k8s *k, const char *url, bool streaming, char *err, size_t errlen)
{
	char auth[16500], cerr[CURL_ERROR_SIZE] = "";
	struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
	CURL *c = k->curl;
	CURLcode rc;

	auth_header(k, auth, sizeof(auth));
	if (*auth)
		h = curl_slist_append(h, auth);
	explicit_bzero(auth, sizeof(auth));
	k->body_len = 0;
	k->lines.len = 0;
	k->code = 0;
	k->streaming = streaming;
	k->watch_up = false;
	k->relist = false;
	curl_easy_reset(c); /* keeps the connection for the next request */
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (k->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, k->ca_file);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	/* a watch is quiet for minutes: keepalive finds a dead peer */
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 10L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, streaming ? (long)K8S_WATCH_S + 60 : 60L);
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, k);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, k);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, k);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &k->code);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(h);
	if (rc != CURLE_OK)
		snprintf(err, errlen, "%s: %s", k->api, *cerr ? cerr : curl_easy_strerror(rc));
	return rc;
}

/* A non-200 answer, in words: the Status message when the body is one. */
static void http_error(struct k8s *k, char *err, size_t errlen)
{
	json_t *st = k->body_len ? json_loadb(k->body, k->body_len, 0, NULL) : NULL;
	const char *msg = st ? str_at(st, "message") : NULL;

	snprintf(err, errlen, "%s: HTTP %ld%s%s", k->api, k->code, msg ? ": " : "", msg ? msg : "");
	json_decref(st);
}

enum { RUN_OK = 0, RUN_FAIL = -1, RUN_RELIST = -2 };

/*
 * List this node's pods, page by page, into a new table swapped in whole
 * at the end: a lookup sees the old pods or the new, never half a list.
 */
static int do_list(struct k8s *k, char *err, size_t errlen)
{
	struct k8s_pod **all = NULL;
	size_t n = 0;
	char *cont = NULL, rv[64] = "";
	struct k8s_table *t = NULL, *old;
	int ret = RUN_FAIL;

	do {
		struct k8s_pod_list page;
		char *url = k8s_pods_url(k->api, k->node, false, NULL, cont), *nc;
		struct k8s_pod **na;

		if (!url || http_get(k, url, false, err, errlen) != CURLE_OK) {
			free(url);
			goto out;
		}
		free(url);
		if (k->code == 410) {
			/* the continue token expired: from the start */
			ret = RUN_RELIST;
			goto out;
		}
		if (k->code != 200) {
			http_error(k, err, errlen);
			goto out;
		}
		if (k8s_parse_pod_list(k->body, k->body_len, &page, err, errlen))
			goto out;
		pthread_mutex_lock(&k->mu);
		k->st.lists++;
		pthread_mutex_unlock(&k->mu);
		na = realloc(all, (n + page.n + 1) * sizeof(*all));
		if (!na) {
			k8s_pod_list_free(&page);
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		all = na;
		for (size_t i = 0; i < page.n; i++)
			all[n++] = k8s_pod_get(page.pods[i]);
		snprintf(rv, sizeof(rv), "%s", page.rv);
		nc = page.cont ? strdup(page.cont) : NULL;
		k8s_pod_list_free(&page);
		free(cont);
		cont = nc;
	} while (cont && !stopping(k));
	t = k8s_table_new();
	if (!t) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	k8s_table_replace(t, all, n);
	pthread_mutex_lock(&k->mu);
	old = k->table;
	t->gen = old->gen + 1;
	k->table = t;
	k->st.pods = n;
	k->state = K8S_UP;
	pthread_mutex_unlock(&k->mu);
	k8s_table_free(old);
	snprintf(k->rv, sizeof(k->rv), "%s", rv);
	ret = RUN_OK;
out:
	for (size_t i = 0; i < n; i++)
		k8s_pod_put(all[i]);
	free(all);
	free(cont);
	return ret;
}

/* Watch from k->rv until the server ends it, it breaks, or a 410 says re-list. */
static int do_watch(struct k8s *k, char *err, size_t errlen)
{
	char *url = k8s_pods_url(k->api, k->node, true, *k->rv ? k->rv : NULL, NULL);
	CURLcode rc;

	if (!url) {
		snprintf(err, errlen, "out of memory");
		return RUN_FAIL;
	}
	rc = http_get(k, url, true, err, errlen);
	free(url);
	if (k->relist || k->code == 410)
		return RUN_RELIST;
	if (k->watch_up)
		/* it was answered: however it ended, resume from the last event seen */
		return RUN_OK;
	if (rc == CURLE_OK && k->code != 200)
		http_error(k, err, errlen);
	return RUN_FAIL;
}

static void *k8s_main(void *arg)
{
	struct k8s *k = arg;
	unsigned backoff = 0;
	bool listed = false;
	char err[512];

	while (!stopping(k)) {
		int r;

		err[0] = 0;
		if (!listed) {
			r = do_list(k, err, sizeof(err));
			listed = r == RUN_OK;
		} else {
			struct timespec t0, t1;

			clock_gettime(CLOCK_MONOTONIC, &t0);
			r = do_watch(k, err, sizeof(err));
			clock_gettime(CLOCK_MONOTONIC, &t1);
			/* a server that closes every watch at once must not spin us */
			if (r == RUN_OK && t1.tv_sec - t0.tv_sec < 1)
				nap(k, 200);
		}
		if (stopping(k))
			break;
		if (r == RUN_RELIST) {
			listed = false;
			pthread_mutex_lock(&k->mu);
			k->st.relists++;
			pthread_mutex_unlock(&k->mu);
			continue;
		}
		if (r == RUN_OK) {
			backoff = 0;
			continue;
		}
		set_state(k, K8S_DOWN, err);
		backoff = backoff ? backoff * 2 : K8S_BACKOFF_MS;
		if (backoff > K8S_BACKOFF_MAX)
			backoff = K8S_BACKOFF_MAX;
		nap(k, backoff);
	}
	return NULL;
}

static void k8s_free(struct k8s *k)
{
	if (k->curl)
		curl_easy_cleanup(k->curl);
	k8s_table_free(k->table);
	k8s_lines_free(&k->lines);
	free(k->body);
	free(k->api);
	free(k->ca_file);
	free(k->token_file);
	free(k->node);
	pthread_mutex_destroy(&k->mu);
	pthread_cond_destroy(&k->cv);
	free(k);
}

struct k8s *k8s_start(const struct k8s_opts *o, char *err, size_t errlen)
{
	struct k8s *k = calloc(1, sizeof(*k));
	pthread_condattr_t ca;
	sigset_t all, old;
	int e;

	if (!k) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (strncmp(o->api, "https://", 8)) {
		snprintf(err, errlen, "--k8s-api %s: an https:// URL is required", o->api);
		free(k);
		return NULL;
	}
	pthread_mutex_init(&k->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cv, &ca);
	pthread_condattr_destroy(&ca);
	k->api = strdup(o->api);
	k->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
	k->token_file = o->token_file ? strdup(o->token_file) : NULL;
	k->node = strdup(o->node ? o->node : "");
	k->lines.max = K8S_MAX_LINE;
	k->table = k8s_table_new();
	if (curl_global_init(CURL_GLOBAL_DEFAULT) || !(k->curl = curl_easy_init()) || !k->api ||
	    !k->node || !k->table) {
		snprintf(err, errlen, "cannot set up the Kubernetes client");
		k8s_free(k);
		return NULL;
	}
	/* signals are the main thread's business */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&k->thread, NULL, k8s_main, k);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		snprintf(err, errlen, "cannot start the Kubernetes client: %s", strerror(e));
		k8s_free(k);
		return NULL;
	}
	return k;
}

void k8s_stop(struct k8s *k)
{
	if (!k)
		return;
	pthread_mutex_lock(&k->mu);
	__atomic_store_n(&k->stop, 1, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&k->cv);
	pthread_mutex_unlock(&k->mu);
	pthread_join(k->thread, NULL);
	k8s_free(k);
	curl_global_cleanup();
}

struct k8s_pod *k8s_get(struct k8s *k, const char *uid)
{
	struct k8s_pod *p;

	pthread_mutex_lock(&k->mu);
	p = k8s_table_get(k->table, uid);
	pthread_mutex_unlock(&k->mu);
	return p;
}

uint64_t k8s_generation(struct k8s *k)
{
	uint64_t g;

	pthread_mutex_lock(&k->mu);
	g = k->table->gen;
	pthread_mutex_unlock(&k->mu);
	return g;
}

enum k8s_state k8s_state(struct k8s *k, char *err, size_t errlen)
{
	enum k8s_state s;

	pthread_mutex_lock(&k->mu);
	s = k->state;
	snprintf(err, errlen, "%s", k->error);
	pthread_mutex_unlock(&k->mu);
	return s;
}

void k8s_get_stats(struct k8s *k, struct k8s_stats *st)
{
	pthread_mutex_lock(&k->mu);
	*st = k->st;
	pthread_mutex_unlock(&k->mu);
}

const char *k8s_api(const struct k8s *k)
{
	return k->api;
}
