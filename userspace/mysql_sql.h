/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * MySQL / MariaDB statement text: a tokenizer-based splitter, normalizer
 * and classifier (libpg_query does not read MySQL). It reads tokens as the
 * server's lexer does in its default SQL mode: '...' and "..." strings with
 * backslash escapes and doubled quotes, `quoted` identifiers, X'..',
 * B'..', N'..' and _charset'..' literals, 0x / 0b numbers, -- (followed by
 * a space), # and / * * / comments, and the executable comments / *! ... * /
 * and / *M! ... * /, whose contents are code.
 *
 * The normalized text is what leaves the host: every literal becomes ?,
 * comments go, spacing is canonical. It never contains a literal, also
 * when the text is cut or does not end where it should.
 *
 * Known gaps (README): ANSI_QUOTES and NO_BACKSLASH_ESCAPES modes are not
 * modelled ("..." is read as a string and \ as an escape).
 */
#ifndef DBW_MYSQL_SQL_H
#define DBW_MYSQL_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analyze.h"

/* Where one statement of a multi-statement text lies. */
struct mysql_span {
	size_t off, len;
};

/*
 * Split text[0..len) into statements at ';' outside quotes and comments
 * (empty statements dropped). Returns how many there are; the first max
 * are written to spans (the last one then takes the rest of the text).
 */
size_t mysql_split(const char *text, size_t len, struct mysql_span *spans, size_t max);

struct mysql_analyzer;

struct mysql_analyzer *mysql_analyzer_new(void);
void mysql_analyzer_free(struct mysql_analyzer *a);

/*
 * Analyse one statement text[0..len) into out (as sql_analyze: its pointers
 * stay valid until the next call on a). truncated: the text was cut by
 * capture limits. Returns 0, or -1 on allocation failure (out then holds
 * the placeholder "<unavailable>").
 */
int mysql_analyze(struct mysql_analyzer *a, const char *text, size_t len, bool truncated,
		  struct sql_analysis *out);

#endif /* DBW_MYSQL_SQL_H */
