// SPDX-License-Identifier: GPL-2.0-only
/*
 * The guard's SQL lexer under BPF_PROG_TEST_RUN: the test puts a text into
 * lex_buf, runs this program with the text's length, and reads the result
 * back from the context. The same code the sk_msg program runs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "dbwarden_abi.h"
#include "lexer.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct lex_args {
	__u32 len;
	__u32 rc;
	struct dbw_lex_result res;
};

SEC("syscall")
int lex_run(struct lex_args *a)
{
	struct dbw_lex_result r;

	a->rc = sql_lex(a->len, &r);
	a->res = r;
	return 0;
}

/* The same with MySQL's rules (the guard's COM_QUERY / COM_STMT_PREPARE texts). */
SEC("syscall")
int lex_run_mysql(struct lex_args *a)
{
	struct dbw_lex_result r;

	a->rc = sql_lex_mode(a->len, 1, &r);
	a->res = r;
	return 0;
}
