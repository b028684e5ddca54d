// SPDX-License-Identifier: GPL-2.0-only
/*
 * The result-masking verdict (bpf/mask.bpf.h) under BPF_PROG_TEST_RUN: the
 * test sets the rules in the maps, gives a connection a fresh state with
 * mask_setup, then runs the verdict's body over byte streams cut into
 * skbs wherever it likes, and compares what comes out byte for byte.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "dbwarden_abi.h"
#include "mask.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct mask_setup_args {
	__u64 key;
	__u32 cand;
	__u32 proto;
};

/* A fresh state for connection key (0: the one mask_run reads). */
SEC("syscall")
int mask_setup(struct mask_setup_args *a)
{
	__u64 key = a->key; /* a map key must not point into the context */

	return mask_state_new(&key, a->cand, a->proto) ? 0 : 1;
}

/*
 * The verdict's body as a tc program: the kernel does not test-run sk_skb
 * programs (BPF_PROG_TEST_RUN answers ENOTSUPP on 6.18), a tc one sees the
 * same __sk_buff and helpers, and its test run hands the program the
 * input from its first byte. Returns 0 for SK_PASS,
 * 2 (TC_ACT_SHOT) for SK_DROP.
 */
SEC("tc")
int mask_run(struct __sk_buff *skb)
{
	return mask_verdict(skb, 0) == SK_PASS ? 0 : 2;
}
