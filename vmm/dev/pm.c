// SPDX-License-Identifier: MIT
/*
 * ACPI fixed hardware registers and 0xCF9 (see pm.h). Accesses may be of any width at any
 * offset (ACPICA uses 16-bit accesses for PM1 and 32-bit for the timer, but a hostile guest
 * may do anything), so registers are handled byte-lane by byte-lane, with the effects that
 * depend on the whole register (SLP_EN) evaluated once after the access.
 */
#define LOG_TAG "pm"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/dev/pm.h"
#include "vmm/lib/log.h"
#include "vmm/state.h"

/* Status bits that are events (may raise the SCI) and that the guest may enable. */
#define PM1_EVENTS	(PM1_TMR | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC)
#define PM1_STS_BITS	(PM1_EVENTS | PM1_BM_STS | PM1_WAK_STS)
/* Control bits the guest may set and read back (SLP_EN and GBL_RLS are write-only). */
#define PM1_CNT_RW	(0x0002u | PM1_CNT_SLP_TYP_MASK)

#define CF9_SYS_RST	0x02
#define CF9_RST_CPU	0x04

struct pm {
	pthread_mutex_t lock;	/* protects everything below; leaf except callbacks */
	struct platform_irq sci;
	void (*request_exit)(void *opaque, enum platform_exit why, int code);
	void *opaque;
	void (*now)(void *opaque, struct timespec *ts);
	uint16_t sts, en, cnt;
	uint8_t cf9;
	uint32_t tmr_offset;	/* added to the clock-derived count (non-zero after migration) */
	int sci_level;
};

static void clock_mono(void *opaque, struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

static void sci_update_locked(struct pm *pm)
{
	int level = (pm->sts & pm->en & PM1_EVENTS) != 0;

	if (level == pm->sci_level)
		return;
	pm->sci_level = level;
	if (pm->sci.set)
		pm->sci.set(pm->sci.opaque, pm->sci.gsi, level);
}

static uint32_t tmr_value(struct pm *pm)
{
	struct timespec ts;
	uint64_t ticks;

	pm->now(pm->opaque, &ts);
	/* Split to avoid overflowing 64 bits: seconds * Hz + ns * Hz / 1e9. */
	ticks = (uint64_t)ts.tv_sec * PM_TMR_HZ + (uint64_t)ts.tv_nsec * PM_TMR_HZ / 1000000000ull;
	return (uint32_t)ticks + pm->tmr_offset;	/* 32-bit counter (FADT TMR_VAL_EXT) */
}

static void request(struct pm *pm, enum platform_exit why)
{
	if (pm->request_exit)
		pm->request_exit(pm->opaque, why, 0);
}

static void pm_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct pm *pm = opaque;
	uint8_t *d = data;
	uint32_t tmr = 0;
	int have_tmr = 0;

	pthread_mutex_lock(&pm->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = off + i;
		unsigned int sh = (unsigned int)(o & 1) * 8;

		if (o < 2) {
			d[i] = (uint8_t)(pm->sts >> sh);
		} else if (o < 4) {
			d[i] = (uint8_t)(pm->en >> sh);
		} else if (o < 6) {
			d[i] = (uint8_t)((pm->cnt | PM1_CNT_SCI_EN) >> sh);
		} else if (o >= PM_TMR_OFF && o < PM_TMR_OFF + 4) {
			if (!have_tmr) {	/* one sample per access, so a dword read is coherent */
				tmr = tmr_value(pm);
				have_tmr = 1;
			}
			d[i] = (uint8_t)(tmr >> ((o - PM_TMR_OFF) * 8));
		} else {
			d[i] = 0;
		}
	}
	pthread_mutex_unlock(&pm->lock);
}

static void pm_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct pm *pm = opaque;
	const uint8_t *d = data;
	int cnt_written = 0, slp_en = 0;

	pthread_mutex_lock(&pm->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = off + i;
		unsigned int sh = (unsigned int)(o & 1) * 8;
		uint16_t v = (uint16_t)(d[i] << sh);

		if (o < 2) {
			pm->sts &= (uint16_t)~(v & PM1_STS_BITS);	/* write 1 to clear */
		} else if (o < 4) {
			pm->en = (uint16_t)((pm->en & ~(0xffu << sh)) | (v & PM1_EVENTS));
		} else if (o < 6) {
			pm->cnt = (uint16_t)((pm->cnt & ~(0xffu << sh)) | (v & PM1_CNT_RW));
			if (v & PM1_CNT_SLP_EN)
				slp_en = 1;
			cnt_written = 1;
		} else if (o == PM_RESET_OFF) {
			if (d[i] == PM_RESET_VALUE) {
				log_ratelimited(LOG_INFO, "guest wrote the ACPI reset register");
				request(pm, PLATFORM_EXIT_RESET);
			} else {
				log_ratelimited(LOG_WARN, "reset register: unexpected value 0x%02x", d[i]);
			}
		} else {
			log_ratelimited(LOG_DBG, "write to read-only/reserved PM offset 0x%llx",
					(unsigned long long)o);
		}
	}
	if (cnt_written && slp_en) {
		unsigned int typ = (pm->cnt & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT;

		if (typ == PM_SLP_TYP_S5) {
			log_ratelimited(LOG_INFO, "guest entered S5: power off");
			request(pm, PLATFORM_EXIT_POWEROFF);
		} else {
			/* Only \_S5 is in the DSDT, so a correct guest never asks for another. */
			log_ratelimited(LOG_WARN, "sleep type %u requested; only S5 is supported", typ);
		}
	}
	sci_update_locked(pm);
	pthread_mutex_unlock(&pm->lock);
}

const struct bus_ops pm_ops = {
	.read = pm_read,
	.write = pm_write,
};

uint8_t pm_cf9_read(struct pm *pm)
{
	uint8_t v;

	pthread_mutex_lock(&pm->lock);
	v = pm->cf9;
	pthread_mutex_unlock(&pm->lock);
	return v;
}

void pm_cf9_write(struct pm *pm, uint8_t val)
{
	pthread_mutex_lock(&pm->lock);
	/* RST_CPU going from 0 to 1 starts the reset (Linux writes SYS_RST first, then both). */
	if ((val & CF9_RST_CPU) && !(pm->cf9 & CF9_RST_CPU)) {
		log_ratelimited(LOG_INFO, "guest reset through port 0xcf9 (0x%02x)", val);
		request(pm, PLATFORM_EXIT_RESET);
	}
	pm->cf9 = val & (uint8_t)~CF9_RST_CPU;	/* RST_CPU reads back 0 */
	pthread_mutex_unlock(&pm->lock);
}

static void cf9_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	if (!len)
		return;
	memset(data, 0, len);
	*(uint8_t *)data = pm_cf9_read(opaque);
}

static void cf9_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	if (!len)
		return;
	pm_cf9_write(opaque, *(const uint8_t *)data);
}

const struct bus_ops pm_cf9_ops = {
	.read = cf9_read,
	.write = cf9_write,
};

void pm_power_button(struct pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts |= PM1_PWRBTN;
	if (!(pm->en & PM1_PWRBTN))
		log_warn("power button pressed but the guest has not enabled it (PWRBTN_EN=0): "
			 "no ACPI button driver loaded?");
	sci_update_locked(pm);
	pthread_mutex_unlock(&pm->lock);
}

/* ---- migration state ---- */

enum { PM_T_STS = 1, PM_T_EN, PM_T_CNT, PM_T_CF9, PM_T_TMR };

int pm_state_save(struct pm *pm, struct state_writer *w)
{
	struct pm_state st;

	pthread_mutex_lock(&pm->lock);
	st = (struct pm_state){ pm->sts, pm->en, pm->cnt, pm->cf9, tmr_value(pm) };
	pthread_mutex_unlock(&pm->lock);
	sw_u16(w, PM_T_STS, st.sts, STATE_F_REQUIRED);
	sw_u16(w, PM_T_EN, st.en, STATE_F_REQUIRED);
	sw_u16(w, PM_T_CNT, st.cnt, STATE_F_REQUIRED);
	sw_u8(w, PM_T_CF9, st.cf9, 0);
	sw_u32(w, PM_T_TMR, st.tmr, 0);
	return 0;		/* writer errors are sticky: the caller checks sw_error() */
}

int pm_state_parse(struct state_reader *r, struct pm_state *st)
{
	struct state_field f;
	int ret;

	memset(st, 0, sizeof(*st));
	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case PM_T_STS: ret = sr_u16(&f, &st->sts); break;
		case PM_T_EN:  ret = sr_u16(&f, &st->en); break;
		case PM_T_CNT: ret = sr_u16(&f, &st->cnt); break;
		case PM_T_CF9: ret = sr_u8(&f, &st->cf9); break;
		case PM_T_TMR: ret = sr_u32(&f, &st->tmr); break;
		default:       ret = sr_skip_unknown(r, &f); break;
		}
		if (ret < 0)
			return ret;
	}
	if (ret < 0)
		return ret;
	st->sts &= PM1_STS_BITS;
	st->en &= PM1_EVENTS;
	st->cnt &= PM1_CNT_RW;
	st->cf9 &= (uint8_t)~CF9_RST_CPU;
	return 0;
}

void pm_state_apply(struct pm *pm, const struct pm_state *st)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts = st->sts;
	pm->en = st->en;
	pm->cnt = st->cnt;
	pm->cf9 = st->cf9;
	pm->tmr_offset = 0;
	pm->tmr_offset = st->tmr - tmr_value(pm);
	pm->sci_level = -1;		/* force the line to the new level */
	sci_update_locked(pm);
	pthread_mutex_unlock(&pm->lock);
}

void pm_get_regs(struct pm *pm, struct pm_regs *r)
{
	pthread_mutex_lock(&pm->lock);
	r->sts = pm->sts;
	r->en = pm->en;
	r->cnt = (uint16_t)(pm->cnt | PM1_CNT_SCI_EN);
	r->sci_level = pm->sci_level;
	pthread_mutex_unlock(&pm->lock);
}

int pm_create(const struct pm_config *cfg, struct pm **out)
{
	struct pm *pm = calloc(1, sizeof(*pm));
	int ret;

	if (!pm)
		return -ENOMEM;
	ret = -pthread_mutex_init(&pm->lock, NULL);
	if (ret) {
		free(pm);
		return ret;
	}
	pm->sci = cfg->sci;
	pm->request_exit = cfg->request_exit;
	pm->opaque = cfg->opaque;
	pm->now = cfg->now ? cfg->now : clock_mono;
	*out = pm;
	return 0;
}

void pm_destroy(struct pm *pm)
{
	if (!pm)
		return;
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}
