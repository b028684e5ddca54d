/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Result masking of Redis replies: not written yet. Such connections
 * never carry the masking verdict (the policy gives their ports no
 * masking rules, see policy_mask_port_rules()); should one reach it,
 * nothing is parsed. Included by mask.bpf.h. BPF-only header.
 */
#ifndef DBW_MASK_RESP_BPF_H
#define DBW_MASK_RESP_BPF_H

/* One step of the Redis parser at w->pos; 1 to stop, 0 to go on. */
__noinline int mask_step_resp(struct __sk_buff *skb)
{
	struct mask_work *w = mask_work_get();

	if (!w || !skb)
		return 1;
	w->st.state = MS_OFF;
	return 1;
}

#endif /* DBW_MASK_RESP_BPF_H */
