// SPDX-License-Identifier: MIT
/*
 * CMOS/RTC (see rtc.h). Register map per the Motorola MC146818A data sheet: 0x00 seconds,
 * 0x02 minutes, 0x04 hours, 0x06 day of week (1 = Sunday), 0x07 day of month, 0x08 month,
 * 0x09 year, 0x01/0x03/0x05 alarms, 0x0A-0x0D status A-D; 0x32 century (IBM PC convention).
 *
 * The guest's time is host time + @offset seconds. Nothing ticks in the device: every read
 * recomputes the registers, so reads are exact and there is no timer thread. The guest's
 * sub-second phase is the host's, which keeps UIP consistent with the seconds rollover.
 */
#define LOG_TAG "rtc"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/dev/rtc.h"
#include "vmm/lib/log.h"
#include "vmm/state.h"

#define REG_SEC		0x00
#define REG_SEC_ALARM	0x01
#define REG_MIN		0x02
#define REG_MIN_ALARM	0x03
#define REG_HOUR	0x04
#define REG_HOUR_ALARM	0x05
#define REG_WDAY	0x06
#define REG_MDAY	0x07
#define REG_MONTH	0x08
#define REG_YEAR	0x09
#define REG_A		0x0a
#define REG_B		0x0b
#define REG_C		0x0c
#define REG_D		0x0d

#define A_UIP		0x80
#define B_SET		0x80
#define B_DM_BINARY	0x04
#define B_24H		0x02
#define D_VRT		0x80

#define CMOS_SIZE	128
#define UIP_WINDOW_NS	244000	/* update cycle begins 244 us before the second ends */

struct rtc {
	pthread_mutex_t lock;		/* protects everything below; leaf */
	void (*now)(void *opaque, struct timespec *ts);
	void *now_opaque;
	uint8_t index;			/* last value written to 0x70 (bit 7 = NMI mask) */
	uint8_t cmos[CMOS_SIZE];	/* status A/B, alarms and RAM; time bytes are computed */
	int64_t offset;			/* guest time - host time, seconds */
	struct tm frozen;		/* the time being set while B.SET is 1 */
};

static void clock_realtime(void *opaque, struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

static uint8_t to_bcd(unsigned int v)
{
	return (uint8_t)(((v / 10) % 10) << 4 | (v % 10));
}

static unsigned int from_bcd(uint8_t v)
{
	return (v >> 4) * 10u + (v & 0x0f);	/* invalid digits give odd values, never a crash */
}

static uint8_t enc(const struct rtc *r, unsigned int v)
{
	return (r->cmos[REG_B] & B_DM_BINARY) ? (uint8_t)v : to_bcd(v);
}

static unsigned int dec(const struct rtc *r, uint8_t v)
{
	return (r->cmos[REG_B] & B_DM_BINARY) ? v : from_bcd(v);
}

static uint8_t enc_hour(const struct rtc *r, int hour)
{
	int pm;

	if (r->cmos[REG_B] & B_24H)
		return enc(r, (unsigned int)hour);
	/* 12-hour mode: 1..12 with bit 7 = PM; midnight is 12 AM, noon 12 PM. */
	pm = hour >= 12;
	hour %= 12;
	if (hour == 0)
		hour = 12;
	return (uint8_t)(enc(r, (unsigned int)hour) | (pm ? 0x80 : 0));
}

static int dec_hour(const struct rtc *r, uint8_t v)
{
	int h;

	if (r->cmos[REG_B] & B_24H)
		return (int)dec(r, v);
	h = (int)dec(r, v & 0x7f) % 12;
	return (v & 0x80) ? h + 12 : h;
}

static void guest_tm(struct rtc *r, struct tm *tm, long *nsec)
{
	struct timespec ts;
	time_t t;

	r->now(r->now_opaque, &ts);
	t = (time_t)(ts.tv_sec + r->offset);
	gmtime_r(&t, tm);
	if (nsec)
		*nsec = ts.tv_nsec;
}

/* The time the guest sees now: frozen while B.SET is set. */
static void current_tm(struct rtc *r, struct tm *tm, long *nsec)
{
	if (r->cmos[REG_B] & B_SET) {
		*tm = r->frozen;
		if (nsec)
			*nsec = 0;
		return;
	}
	guest_tm(r, tm, nsec);
}

static void set_offset_from(struct rtc *r, struct tm *tm)
{
	struct timespec ts;
	time_t t;

	tm->tm_isdst = 0;
	t = timegm(tm);
	if (t == (time_t)-1) {
		log_ratelimited(LOG_WARN, "guest wrote an invalid date; time unchanged");
		return;
	}
	r->now(r->now_opaque, &ts);
	r->offset = (int64_t)t - (int64_t)ts.tv_sec;
}

static uint8_t time_reg_read(struct rtc *r, unsigned int idx)
{
	struct tm tm;
	int year;

	current_tm(r, &tm, NULL);
	year = tm.tm_year + 1900;
	switch (idx) {
	case REG_SEC:
		return enc(r, (unsigned int)tm.tm_sec);
	case REG_MIN:
		return enc(r, (unsigned int)tm.tm_min);
	case REG_HOUR:
		return enc_hour(r, tm.tm_hour);
	case REG_WDAY:
		return enc(r, (unsigned int)tm.tm_wday + 1);
	case REG_MDAY:
		return enc(r, (unsigned int)tm.tm_mday);
	case REG_MONTH:
		return enc(r, (unsigned int)tm.tm_mon + 1);
	case REG_YEAR:
		return enc(r, (unsigned int)(year % 100));
	case RTC_CENTURY_INDEX:
		return enc(r, (unsigned int)(year / 100));
	}
	return 0;
}

static void time_reg_write(struct rtc *r, unsigned int idx, uint8_t v)
{
	struct tm tm;
	int year;

	current_tm(r, &tm, NULL);
	year = tm.tm_year + 1900;
	switch (idx) {
	case REG_SEC:
		tm.tm_sec = (int)dec(r, v) % 60;
		break;
	case REG_MIN:
		tm.tm_min = (int)dec(r, v) % 60;
		break;
	case REG_HOUR:
		tm.tm_hour = dec_hour(r, v) % 24;
		break;
	case REG_WDAY:
		return;			/* derived from the date; the write is accepted and ignored */
	case REG_MDAY:
		tm.tm_mday = (int)dec(r, v);
		if (tm.tm_mday < 1 || tm.tm_mday > 31)
			tm.tm_mday = 1;
		break;
	case REG_MONTH:
		tm.tm_mon = (int)dec(r, v) - 1;
		if (tm.tm_mon < 0 || tm.tm_mon > 11)
			tm.tm_mon = 0;
		break;
	case REG_YEAR:
		year = year / 100 * 100 + (int)dec(r, v) % 100;
		tm.tm_year = year - 1900;
		break;
	case RTC_CENTURY_INDEX:
		year = (int)dec(r, v) % 100 * 100 + year % 100;
		tm.tm_year = year - 1900;
		break;
	}
	if (r->cmos[REG_B] & B_SET) {
		r->frozen = tm;		/* applied when SET is cleared */
		return;
	}
	set_offset_from(r, &tm);
}

static int is_time_reg(unsigned int idx)
{
	return idx == REG_SEC || idx == REG_MIN || idx == REG_HOUR || idx == REG_WDAY ||
	       idx == REG_MDAY || idx == REG_MONTH || idx == REG_YEAR ||
	       idx == RTC_CENTURY_INDEX;
}

static uint8_t data_read_locked(struct rtc *r)
{
	unsigned int idx = r->index & 0x7f;
	struct tm tm;
	long nsec;
	uint8_t v;

	if (is_time_reg(idx))
		return time_reg_read(r, idx);
	switch (idx) {
	case REG_A:
		v = r->cmos[REG_A] & 0x7f;
		if (!(r->cmos[REG_B] & B_SET)) {
			current_tm(r, &tm, &nsec);
			if (nsec >= 1000000000L - UIP_WINDOW_NS)
				v |= A_UIP;
		}
		return v;
	case REG_C:
		return 0;		/* no interrupt flags: nothing is ever raised */
	case REG_D:
		return D_VRT;		/* the battery is always good */
	}
	return r->cmos[idx];
}

static void data_write_locked(struct rtc *r, uint8_t v)
{
	unsigned int idx = r->index & 0x7f;

	if (is_time_reg(idx)) {
		time_reg_write(r, idx, v);
		return;
	}
	switch (idx) {
	case REG_A:
		r->cmos[REG_A] = v & 0x7f;	/* UIP is read-only */
		return;
	case REG_B: {
		uint8_t old = r->cmos[REG_B];

		if (!(old & B_SET) && (v & B_SET))
			guest_tm(r, &r->frozen, NULL);		/* stop the clock */
		else if ((old & B_SET) && !(v & B_SET))
			set_offset_from(r, &r->frozen);		/* start it at the new time */
		r->cmos[REG_B] = v;
		return;
	}
	case REG_C:
	case REG_D:
		return;			/* read-only */
	}
	r->cmos[idx] = v;
}

static void rtc_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct rtc *r = opaque;
	uint8_t *d = data;

	pthread_mutex_lock(&r->lock);
	for (uint32_t i = 0; i < len; i++) {
		if (off + i == 0)
			d[i] = r->index;	/* write-only on real chipsets; reading back is harmless */
		else if (off + i == 1)
			d[i] = data_read_locked(r);
		else
			d[i] = 0xff;
	}
	pthread_mutex_unlock(&r->lock);
}

static void rtc_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct rtc *r = opaque;
	const uint8_t *d = data;

	pthread_mutex_lock(&r->lock);
	for (uint32_t i = 0; i < len; i++) {
		if (off + i == 0)
			r->index = d[i];
		else if (off + i == 1)
			data_write_locked(r, d[i]);
	}
	pthread_mutex_unlock(&r->lock);
}

const struct bus_ops rtc_ops = {
	.read = rtc_read,
	.write = rtc_write,
};

/* ---- migration state ---- */

enum { RTC_T_INDEX = 1, RTC_T_CMOS, RTC_T_OFFSET, RTC_T_FROZEN };

int rtc_state_save(struct rtc *r, struct state_writer *w)
{
	struct tm frozen;
	uint8_t cmos[CMOS_SIZE];
	uint8_t index;
	int64_t offset;

	pthread_mutex_lock(&r->lock);
	index = r->index;
	memcpy(cmos, r->cmos, sizeof(cmos));
	offset = r->offset;
	frozen = r->frozen;
	pthread_mutex_unlock(&r->lock);
	sw_u8(w, RTC_T_INDEX, index, STATE_F_REQUIRED);
	sw_bytes(w, RTC_T_CMOS, cmos, sizeof(cmos), STATE_F_REQUIRED);
	sw_u64(w, RTC_T_OFFSET, (uint64_t)offset, STATE_F_REQUIRED);
	if (cmos[REG_B] & B_SET)
		sw_u64(w, RTC_T_FROZEN, (uint64_t)timegm(&frozen), 0);
	return 0;		/* writer errors are sticky: the caller checks sw_error() */
}

int rtc_state_parse(struct state_reader *rd, struct rtc_state *st)
{
	struct state_field f;
	uint64_t v;
	int ret;

	memset(st, 0, sizeof(*st));
	st->cmos[REG_A] = 0x26;
	st->cmos[REG_B] = B_24H;
	while ((ret = sr_next(rd, &f)) > 0) {
		switch (f.tag) {
		case RTC_T_INDEX:
			ret = sr_u8(&f, &st->index);
			break;
		case RTC_T_CMOS:
			ret = sr_bytes(&f, st->cmos, sizeof(st->cmos));
			break;
		case RTC_T_OFFSET:
			ret = sr_u64(&f, &v);
			st->offset = (int64_t)v;
			break;
		case RTC_T_FROZEN:
			ret = sr_u64(&f, &v);
			st->frozen = (int64_t)v;
			break;
		default:
			ret = sr_skip_unknown(rd, &f);
			break;
		}
		if (ret < 0)
			return ret;
	}
	return ret;
}

void rtc_state_apply(struct rtc *r, const struct rtc_state *st)
{
	time_t t = (time_t)st->frozen;

	pthread_mutex_lock(&r->lock);
	r->index = st->index;
	memcpy(r->cmos, st->cmos, sizeof(r->cmos));
	r->offset = st->offset;
	gmtime_r(&t, &r->frozen);
	pthread_mutex_unlock(&r->lock);
}

int rtc_nmi_masked(struct rtc *r)
{
	int m;

	pthread_mutex_lock(&r->lock);
	m = !!(r->index & 0x80);
	pthread_mutex_unlock(&r->lock);
	return m;
}

int rtc_create(const struct rtc_config *cfg, struct rtc **out)
{
	struct rtc *r = calloc(1, sizeof(*r));
	int ret;

	if (!r)
		return -ENOMEM;
	ret = -pthread_mutex_init(&r->lock, NULL);
	if (ret) {
		free(r);
		return ret;
	}
	r->now = cfg && cfg->now ? cfg->now : clock_realtime;
	r->now_opaque = cfg ? cfg->opaque : NULL;
	r->cmos[REG_A] = 0x26;		/* 32.768 kHz time base, 1024 Hz rate */
	r->cmos[REG_B] = B_24H;		/* BCD, 24-hour, as a PC BIOS sets it */
	*out = r;
	return 0;
}

void rtc_destroy(struct rtc *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r);
}
