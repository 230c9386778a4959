/* SPDX-License-Identifier: MIT */
/*
 * ACPI fixed hardware (ACPI 6.5 §4.8) in one 16-port I/O block, plus the chipset reset
 * control register at 0xCF9:
 *
 *   base+0x0  PM1a_STS  (16 bit, write 1 to clear)    TMR_STS, PWRBTN_STS, WAK_STS ...
 *   base+0x2  PM1a_EN   (16 bit)                      TMR_EN, PWRBTN_EN ...
 *   base+0x4  PM1a_CNT  (16 bit)                      SCI_EN (reads 1), SLP_TYP, SLP_EN
 *   base+0x8  PM_TMR    (32 bit, read-only)           3.579545 MHz free-running counter
 *   base+0xc  RESET_REG (8 bit, write)                FADT reset register
 *
 * The SCI is a level-triggered interrupt: it is asserted while (PM1_STS & PM1_EN) has an
 * event bit set, so the guest's write-1-to-clear of the status bit deasserts it.
 * SLP_EN with SLP_TYP = the \_S5 value requests power-off; the reset register (its FADT
 * value), or 0xCF9 with bit 2 set, requests a reset.
 *
 * Threading: handlers run on vCPU threads, pm_power_button() on the main loop; all take the
 * device lock, which is a leaf except for the irq and exit callbacks.
 */
#ifndef VMM_DEV_PM_H
#define VMM_DEV_PM_H

#include <stdint.h>
#include <time.h>

#include "vmm/bus.h"
#include "vmm/platform.h"

#define PM_NR_PORTS		16
#define PM_EVT_OFF		0x0
#define PM_CNT_OFF		0x4
#define PM_TMR_OFF		0x8
#define PM_RESET_OFF		0xc
#define PM_RESET_VALUE		0x06	/* what the FADT tells the guest to write */
#define PM_SLP_TYP_S5		5	/* the \_S5 package's value */
#define PM_TMR_HZ		3579545ull

/* PM1 status / enable bits */
#define PM1_TMR			(1u << 0)
#define PM1_BM_STS		(1u << 4)
#define PM1_GBL			(1u << 5)
#define PM1_PWRBTN		(1u << 8)
#define PM1_SLPBTN		(1u << 9)
#define PM1_RTC			(1u << 10)
#define PM1_WAK_STS		(1u << 15)
/* PM1 control bits */
#define PM1_CNT_SCI_EN		(1u << 0)
#define PM1_CNT_SLP_TYP_SHIFT	10
#define PM1_CNT_SLP_TYP_MASK	(7u << 10)
#define PM1_CNT_SLP_EN		(1u << 13)

struct pm_config {
	struct platform_irq sci;
	/* Power-off/reset requests (PLATFORM_EXIT_POWEROFF/RESET, code 0); lock held. */
	void (*request_exit)(void *opaque, enum platform_exit why, int code);
	void *opaque;
	/* Monotonic clock for PM_TMR; NULL = clock_gettime(CLOCK_MONOTONIC). */
	void (*now)(void *opaque, struct timespec *ts);
};

struct pm;

int  pm_create(const struct pm_config *cfg, struct pm **out);
void pm_destroy(struct pm *pm);

/* [base, base+PM_NR_PORTS) and the one-byte 0xCF9 register; opaque = struct pm *. */
extern const struct bus_ops pm_ops;
extern const struct bus_ops pm_cf9_ops;

/* Press the power button: PWRBTN_STS and the SCI if the guest enabled it (main loop). */
void pm_power_button(struct pm *pm);

uint8_t pm_cf9_read(struct pm *pm);
void    pm_cf9_write(struct pm *pm, uint8_t val);

/*
 * Migration state (two-phase; vCPUs paused). PM_TMR travels as its value at save time and
 * continues from there on the destination, whose monotonic clock is unrelated.
 */
struct pm_state {
	uint16_t sts, en, cnt;
	uint8_t cf9;
	uint32_t tmr;
};
struct state_writer;
struct state_reader;
int  pm_state_save(struct pm *pm, struct state_writer *w);
int  pm_state_parse(struct state_reader *r, struct pm_state *st);
/* Apply and drive the SCI to match. */
void pm_state_apply(struct pm *pm, const struct pm_state *st);

/* Register snapshot for status and tests. */
struct pm_regs {
	uint16_t sts, en, cnt;
	int sci_level;
};
void pm_get_regs(struct pm *pm, struct pm_regs *r);

#endif
