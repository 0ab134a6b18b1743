// SPDX-License-Identifier: GPL-2.0
/*
 * Makes the kernel log a real splat when loaded, then refuses to stay loaded (so it can be
 * loaded again): ebpf-lab's tests and recorded logs of kernel splats (lab/guest/splats.py).
 *
 *   insmod splat.ko                 WARN(): "WARNING: CPU: ... at .../splat.c"
 *   insmod splat.ko mode=atomic     "BUG: scheduling while atomic" (msleep with preemption off)
 *   insmod splat.ko mode=hang       "INFO: task insmod blocked" once kernel.hung_task_timeout_secs
 *                                   is shorter than seconds= (an uninterruptible sleep)
 *   insmod splat.ko mode=lockup     "watchdog: BUG: soft lockup" and an RCU stall once
 *                                   kernel.watchdog_thresh and rcu_cpu_stall_timeout are short
 *                                   (a busy wait with preemption off)
 *   insmod splat.ko mode=rcu        an RCU stall, "rcu: INFO: rcu_preempt detected stalls", once
 *                                   rcu_cpu_stall_timeout is short and a grace period starts
 *                                   (any process that exits starts one): a reader that sleeps
 *                                   (PREEMPT_RCU, as Debian builds, lets it; it blocks the grace period)
 *   insmod splat.ko mode=oops       "BUG: kernel NULL pointer dereference" and its Oops; the
 *                                   kernel kills insmod and carries on (Debian does not set
 *                                   panic_on_oops), but the module never finishes loading
 */
#include <linux/delay.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/string.h>

static char *mode = "warn";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "warn, atomic, hang, lockup, rcu or oops");

static int seconds = 8;
module_param(seconds, int, 0444);
MODULE_PARM_DESC(seconds, "how long hang, lockup and rcu last");

static int __init splat_init(void)
{
	if (!strcmp(mode, "warn")) {
		WARN(1, "ebpf-lab test splat");
	} else if (!strcmp(mode, "atomic")) {
		preempt_disable();
		msleep(10);
		preempt_enable();
	} else if (!strcmp(mode, "hang")) {
		schedule_timeout_uninterruptible(seconds * HZ);
	} else if (!strcmp(mode, "lockup")) {
		preempt_disable();
		mdelay(seconds * 1000);
		preempt_enable();
	} else if (!strcmp(mode, "rcu")) {
		rcu_read_lock();
		msleep(seconds * 1000);
		rcu_read_unlock();
	} else if (!strcmp(mode, "oops")) {
		/* volatile: the compiler must load through it, not turn the fault into a trap. */
		int *volatile nowhere = NULL;

		return *nowhere;
	} else {
		return -EINVAL;
	}
	/* Not loaded: the next insmod runs this again. */
	return -ECANCELED;
}

module_init(splat_init);
MODULE_DESCRIPTION("ebpf-lab: kernel splats on purpose, for tests");
MODULE_LICENSE("GPL");
