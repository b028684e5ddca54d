// SPDX-License-Identifier: GPL-2.0-only
/*
 * A real libpq client for the end-to-end tests: the extended protocol the
 * way applications drive it. One line per result on stdout.
 *
 *   pq_client CONNINFO execparams
 *   pq_client CONNINFO prepared N
 *   pq_client CONNINFO pipeline N
 *   pq_client CONNINFO badprepare
 *   pq_client CONNINFO extended SQL...   each SQL through PQexecParams
 *   pq_client CONNINFO named SQL...      each SQL through PQprepare + PQexecPrepared
 *
 * extended/named print "ok TAG" or "error SQLSTATE MESSAGE" per statement on
 * one connection, so a test sees whether the session goes on after an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

static int check(PGconn *c, PGresult *r, const char *what)
{
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fprintf(stderr, "%s: %s", what, PQerrorMessage(c));
		PQclear(r);
		return -1;
	}
	printf("%s %s %d\n", what, PQcmdStatus(r), PQntuples(r));
	PQclear(r);
	return 0;
}

static int execparams(PGconn *c)
{
	const char *vals[2] = { "41119999", "secret-token-PQX" };
	Oid types[2] = { 23, 25 };
	PGresult *r;

	r = PQexec(c, "CREATE TEMP TABLE pq_t (id int, note text)");
	if (check(c, r, "create"))
		return 1;
	r = PQexecParams(c, "INSERT INTO pq_t VALUES ($1, $2)", 2, types, vals, NULL, NULL, 0);
	if (check(c, r, "execparams"))
		return 1;
	return 0;
}

static int prepared(PGconn *c, int n)
{
	Oid types[2] = { 23, 25 };
	PGresult *r = PQprepare(c, "ins", "SELECT $1::int + 1, length($2::text)", 2, types);
	char num[32];

	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "prepare: %s", PQerrorMessage(c));
		return 1;
	}
	PQclear(r);
	for (int i = 0; i < n; i++) {
		const char *vals[2] = { num, "secret-token-PQX" };

		snprintf(num, sizeof(num), "%d", 70000000 + i);
		r = PQexecPrepared(c, "ins", 2, vals, NULL, NULL, 0);
		if (check(c, r, "execprepared"))
			return 1;
	}
	return 0;
}

static int pipeline(PGconn *c, int n)
{
	char num[32];
	int got = 0;

	if (!PQenterPipelineMode(c)) {
		fprintf(stderr, "pipeline: %s", PQerrorMessage(c));
		return 1;
	}
	for (int i = 0; i < n; i++) {
		const char *vals[1] = { num };

		snprintf(num, sizeof(num), "%d", 90000000 + i);
		if (!PQsendQueryParams(c, "SELECT $1::int * 2", 1, NULL, vals, NULL, NULL, 0)) {
			fprintf(stderr, "send: %s", PQerrorMessage(c));
			return 1;
		}
	}
	if (!PQpipelineSync(c))
		return 1;
	while (got < n) {
		PGresult *r = PQgetResult(c);

		if (!r)
			continue; /* end of one query's results */
		if (PQresultStatus(r) == PGRES_TUPLES_OK) {
			printf("pipeline %s %d\n", PQcmdStatus(r), PQntuples(r));
			got++;
		} else if (PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
			fprintf(stderr, "pipeline result: %s", PQresultErrorMessage(r));
			PQclear(r);
			return 1;
		}
		PQclear(r);
	}
	/* then the Sync's own result */
	for (;;) {
		PGresult *r = PQgetResult(c);
		int sync = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;

		PQclear(r);
		if (sync)
			break;
	}
	if (!PQexitPipelineMode(c)) {
		fprintf(stderr, "exit pipeline: %s", PQerrorMessage(c));
		return 1;
	}
	return 0;
}

static int badprepare(PGconn *c)
{
	PGresult *r = PQprepare(c, "bad", "SELEC broken FROM", 0, NULL);

	printf("badprepare %s\n", PQresStatus(PQresultStatus(r)));
	PQclear(r);
	return 0;
}

static void report(PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		printf("ok %s\n", PQcmdStatus(r));
	else
		printf("error %s %s", PQresultErrorField(r, PG_DIAG_SQLSTATE),
		       PQresultErrorMessage(r));
	PQclear(r);
}

static int each_sql(PGconn *c, char **sql, int n, int named)
{
	for (int i = 0; i < n; i++) {
		if (named) {
			char name[32];
			PGresult *r;

			snprintf(name, sizeof(name), "s%d", i);
			r = PQprepare(c, name, sql[i], 0, NULL);
			if (PQresultStatus(r) != PGRES_COMMAND_OK) {
				report(r);
				continue;
			}
			PQclear(r);
			report(PQexecPrepared(c, name, 0, NULL, NULL, NULL, 0));
		} else {
			report(PQexecParams(c, sql[i], 0, NULL, NULL, NULL, NULL, 0));
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	PGconn *c;
	int rc;

	if (argc < 3) {
		fprintf(stderr,
			"usage: pq_client CONNINFO execparams|prepared N|pipeline N|badprepare|"
			"extended SQL...|named SQL...\n");
		return 2;
	}
	c = PQconnectdb(argv[1]);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "connect: %s", PQerrorMessage(c));
		return 1;
	}
	if (!strcmp(argv[2], "execparams"))
		rc = execparams(c);
	else if (!strcmp(argv[2], "prepared") && argc > 3)
		rc = prepared(c, atoi(argv[3]));
	else if (!strcmp(argv[2], "pipeline") && argc > 3)
		rc = pipeline(c, atoi(argv[3]));
	else if (!strcmp(argv[2], "badprepare"))
		rc = badprepare(c);
	else if (!strcmp(argv[2], "extended"))
		rc = each_sql(c, argv + 3, argc - 3, 0);
	else if (!strcmp(argv[2], "named"))
		rc = each_sql(c, argv + 3, argc - 3, 1);
	else
		rc = 2;
	PQfinish(c);
	return rc;
}
