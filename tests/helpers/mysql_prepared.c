// SPDX-License-Identifier: GPL-2.0-only
/*
 * A real binary-protocol MySQL client for the end-to-end tests (libmariadb):
 * COM_STMT_PREPARE, COM_STMT_EXECUTE twice with a bound parameter,
 * COM_STMT_RESET, an INSERT with two parameters, COM_STMT_CLOSE, and a
 * prepare that fails. Usage: mysql_prepared HOST PORT USER PASSWORD DB TABLE
 * With a seventh argument SQL: prepare SQL and execute it, print "errno
 * sqlstate message" of the first that fails, then run SELECT 1 on the same
 * connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mysql.h>

static int fail(MYSQL *m, const char *what)
{
	fprintf(stderr, "mysql_prepared: %s: %s\n", what, mysql_error(m));
	return 1;
}

/* Execute st with one int parameter; returns the rows fetched, or -1. */
static int run_select(MYSQL_STMT *st, int id)
{
	MYSQL_BIND in = { 0 }, out = { 0 };
	char v[65];
	unsigned long vlen = 0;
	int rows = 0;

	in.buffer_type = MYSQL_TYPE_LONG;
	in.buffer = &id;
	if (mysql_stmt_bind_param(st, &in) || mysql_stmt_execute(st))
		return -1;
	out.buffer_type = MYSQL_TYPE_STRING;
	out.buffer = v;
	out.buffer_length = sizeof(v) - 1;
	out.length = &vlen;
	if (mysql_stmt_bind_result(st, &out) || mysql_stmt_store_result(st))
		return -1;
	while (mysql_stmt_fetch(st) == 0)
		rows++;
	mysql_stmt_free_result(st);
	return rows;
}

int main(int argc, char **argv)
{
	MYSQL *m;
	MYSQL_STMT *st, *ins, *bad;
	MYSQL_BIND p[2];
	char q[256], val[] = "lit_prep_secret";
	unsigned long vlen = strlen(val);
	int id = 31337001, r1, r2;
	unsigned int ssl = 0;

	if (argc != 7 && argc != 8) {
		fprintf(stderr, "usage: mysql_prepared HOST PORT USER PASSWORD DB TABLE\n");
		return 2;
	}
	m = mysql_init(NULL);
	mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &ssl);
	if (!mysql_real_connect(m, argv[1], argv[3], argv[4], argv[5], atoi(argv[2]), NULL, 0))
		return fail(m, "connect");
	st = mysql_stmt_init(m);
	if (argc == 8) {
		if (mysql_stmt_prepare(st, argv[7], strlen(argv[7])) || mysql_stmt_execute(st))
			printf("%u %s %s\n", mysql_stmt_errno(st), mysql_stmt_sqlstate(st),
			       mysql_stmt_error(st));
		else
			printf("executed\n");
		mysql_stmt_close(st);
		if (mysql_query(m, "SELECT 1"))
			return fail(m, "select after the prepare");
		mysql_free_result(mysql_store_result(m));
		mysql_close(m);
		return 0;
	}
	snprintf(q, sizeof(q), "SELECT v FROM %s WHERE id = ?", argv[6]);
	if (mysql_stmt_prepare(st, q, strlen(q)))
		return fail(m, "prepare");
	r1 = run_select(st, 3);
	mysql_stmt_reset(st);
	r2 = run_select(st, 424242);
	if (r1 != 1 || r2 != 0)
		return fail(m, "select rows");
	ins = mysql_stmt_init(m);
	snprintf(q, sizeof(q), "INSERT INTO %s VALUES (?, ?)", argv[6]);
	if (mysql_stmt_prepare(ins, q, strlen(q)))
		return fail(m, "prepare insert");
	memset(p, 0, sizeof(p));
	p[0].buffer_type = MYSQL_TYPE_LONG;
	p[0].buffer = &id;
	p[1].buffer_type = MYSQL_TYPE_STRING;
	p[1].buffer = val;
	p[1].buffer_length = vlen;
	p[1].length = &vlen;
	if (mysql_stmt_bind_param(ins, p) || mysql_stmt_execute(ins))
		return fail(m, "insert");
	mysql_stmt_close(ins);
	mysql_stmt_close(st);
	bad = mysql_stmt_init(m);
	snprintf(q, sizeof(q), "SELECT * FROM no_such_table_%s WHERE id = ?", argv[6]);
	if (!mysql_stmt_prepare(bad, q, strlen(q)))
		return fail(m, "prepare of a missing table succeeded");
	mysql_stmt_close(bad);
	mysql_close(m);
	return 0;
}
