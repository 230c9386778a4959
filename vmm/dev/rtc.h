/* SPDX-License-Identifier: MIT */
/*
 * MC146818-compatible CMOS/RTC at ports 0x70 (index, bit 7 = NMI disable) and 0x71 (data).
 * The time registers are computed from the host's wall clock (UTC) plus an offset the guest
 * changes by writing them, in BCD or binary and 12/24-hour form as register B says. Register
 * A's UIP bit is set in the last 244 us before each second boundary, as on the real part;
 * B's SET bit freezes the registers while the guest writes a new time. CMOS RAM bytes
 * 0x0E..0x7F are plain storage (0x32 is the century, FADT.CENTURY).
 *
 * No periodic, alarm or update-ended interrupts are generated (register C reads 0).
 * Threading: handlers run on vCPU threads under the device lock.
 */
#ifndef VMM_DEV_RTC_H
#define VMM_DEV_RTC_H

#include <stdint.h>
#include <time.h>

#include "vmm/bus.h"

#define RTC_NR_PORTS		2
#define RTC_CENTURY_INDEX	0x32

struct rtc_config {
	/* Wall clock source; NULL = clock_gettime(CLOCK_REALTIME). Tests pass a fake. */
	void (*now)(void *opaque, struct timespec *ts);
	void *opaque;
};

struct rtc;

int  rtc_create(const struct rtc_config *cfg, struct rtc **out);
void rtc_destroy(struct rtc *r);

/* Ports 0x70..0x71; opaque = struct rtc *. */
extern const struct bus_ops rtc_ops;

/*
 * Migration state (two-phase: parse, then apply; vCPUs paused). The guest's time travels as
 * its offset from the host's wall clock, so it stays right on a destination whose clock is
 * synchronised with the source's.
 */
struct rtc_state {
	uint8_t index;
	uint8_t cmos[128];
	int64_t offset;
	int64_t frozen;		/* guest time being set while B.SET is 1 (epoch seconds) */
};
struct state_writer;
struct state_reader;
int  rtc_state_save(struct rtc *r, struct state_writer *w);
int  rtc_state_parse(struct state_reader *rd, struct rtc_state *st);
void rtc_state_apply(struct rtc *r, const struct rtc_state *st);

/* Whether the guest has masked NMIs through port 0x70 bit 7 (informational). */
int  rtc_nmi_masked(struct rtc *r);

#endif
