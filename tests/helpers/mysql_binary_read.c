// SPDX-License-Identifier: GPL-2.0-only
/*
 * A binary-protocol reader for the result-masking tests (libmariadb):
 * prepare SQL, execute it (COM_STMT_EXECUTE: a binary result set), print
 * every row's values as text, tab-separated ("NULL" for NULL), then run
 * SELECT 'after' as a text query on the same connection and print it.
 * Usage: mysql_binary_read HOST PORT USER DB SQL
 * With DBW_CURSOR=1 in the environment the statement opens a read-only
 * cursor and the rows come two at a time (COM_STMT_FETCH).
 * Exit 0 when all of it worked; 1 with the client's error on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mysql.h>

#define MAXCOLS 80
#define MAXLEN	256

static int fail(MYSQL *m, MYSQL_STMT *st, const char *what)
{
	fprintf(stderr, "mysql_binary_read: %s: %s\n", what,
		st ? mysql_stmt_error(st) : mysql_error(m));
	return 1;
}

int main(int argc, char **argv)
{
	static char vals[MAXCOLS][MAXLEN];
	unsigned long lens[MAXCOLS];
	my_bool nulls[MAXCOLS];
	MYSQL_BIND out[MAXCOLS];
	unsigned int ssl = 0, n;
	MYSQL_STMT *st;
	MYSQL_RES *res;
	MYSQL_ROW row;
	MYSQL *m;
	int r;

	if (argc != 6) {
		fprintf(stderr, "usage: mysql_binary_read HOST PORT USER DB SQL\n");
		return 2;
	}
	m = mysql_init(NULL);
	mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &ssl);
	if (!mysql_real_connect(m, argv[1], argv[3], "", argv[4], atoi(argv[2]), NULL, 0))
		return fail(m, NULL, "connect");
	st = mysql_stmt_init(m);
	if (mysql_stmt_prepare(st, argv[5], strlen(argv[5])))
		return fail(m, st, "prepare");
	if (getenv("DBW_CURSOR")) {
		unsigned long type = CURSOR_TYPE_READ_ONLY, prefetch = 2;

		if (mysql_stmt_attr_set(st, STMT_ATTR_CURSOR_TYPE, &type) ||
		    mysql_stmt_attr_set(st, STMT_ATTR_PREFETCH_ROWS, &prefetch))
			return fail(m, st, "cursor");
	}
	if (mysql_stmt_execute(st))
		return fail(m, st, "execute");
	n = mysql_stmt_field_count(st);
	if (n > MAXCOLS)
		n = MAXCOLS;
	memset(out, 0, sizeof(out));
	for (unsigned int i = 0; i < n; i++) {
		out[i].buffer_type = MYSQL_TYPE_STRING;
		out[i].buffer = vals[i];
		out[i].buffer_length = MAXLEN - 1;
		out[i].length = &lens[i];
		out[i].is_null = &nulls[i];
	}
	if (mysql_stmt_bind_result(st, out))
		return fail(m, st, "bind");
	while ((r = mysql_stmt_fetch(st)) == 0 || r == MYSQL_DATA_TRUNCATED) {
		for (unsigned int i = 0; i < n; i++)
			printf("%s%.*s", i ? "\t" : "", nulls[i] ? 4 : (int)lens[i],
			       nulls[i] ? "NULL" : vals[i]);
		printf("\n");
	}
	if (r != MYSQL_NO_DATA)
		return fail(m, st, "fetch");
	mysql_stmt_close(st);
	if (mysql_query(m, "SELECT 'after'") || !(res = mysql_store_result(m)))
		return fail(m, NULL, "text query after");
	while ((row = mysql_fetch_row(res)))
		printf("%s\n", row[0]);
	mysql_free_result(res);
	mysql_close(m);
	return 0;
}
