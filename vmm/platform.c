// SPDX-License-Identifier: MIT
/*
 * The legacy PC platform (see platform.h): creates the devices under vmm/dev/, puts them on
 * the PIO bus, drives their interrupt lines with KVM_IRQ_LINE, and writes the ACPI tables
 * that describe them (vmm/acpi/). Port map:
 *
 *   0x61          speaker / PIT channel 2 gate (normally in-kernel, see port61_*)
 *   0x60, 0x64    i8042 (reset line)          0x70-0x71   CMOS/RTC
 *   0x80          POST code / I/O delay       0xf4-0xf7   debug exit
 *   0x3f8-0x3ff   COM1 (IRQ 4)                0x600-0x60f ACPI PM1a, PM timer, reset reg
 *   0xcf9         reset control (may be handed over to the PCI host bridge)
 */
#define LOG_TAG "platform"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/kvm.h>

#include "vmm/acpi/acpi.h"
#include "vmm/bus.h"
#include "vmm/dev/debugexit.h"
#include "vmm/dev/i8042.h"
#include "vmm/dev/pm.h"
#include "vmm/dev/rtc.h"
#include "vmm/dev/serial.h"
#include "vmm/kvm.h"
#include "vmm/layout.h"
#include "vmm/lib/log.h"
#include "vmm/memory.h"
#include "vmm/platform.h"
#include "vmm/state.h"

#define PORT_SPEAKER	0x61
#define PORT_POST	0x80
#define MAX_RANGES	16

struct platform_state {
	struct serial_state com1;
	struct rtc_state rtc;
	struct pm_state pm;
	struct i8042_state kbc;
};

struct platform {
	struct platform_env env;
	struct acpi *acpi;
	struct serial *com1;
	struct rtc *rtc;
	struct i8042 *kbc;
	struct pm *pm;
	struct debugexit de;
	uint64_t ranges[MAX_RANGES];	/* PIO bases we registered, for destroy */
	unsigned int nr_ranges;
	struct platform_state *loaded;	/* parsed by load(), applied by post_load() */
	uint8_t port61;			/* speaker bits the guest wrote (fallback only) */
	int port61_warned;
};

/* ---- interrupt lines and exit requests ---- */

static void irq_line_set(void *opaque, unsigned int gsi, int level)
{
	struct platform *p = opaque;
	struct kvm_irq_level l = { .irq = gsi, .level = (uint32_t)level };
	int ret;

	ret = kvm_ioctl(p->env.vm_fd, KVM_IRQ_LINE, &l);
	if (ret < 0)
		log_ratelimited(LOG_ERR, "KVM_IRQ_LINE gsi %u level %d: %s", gsi, level,
				strerror(-ret));
}

static void kbc_reset(void *opaque)
{
	struct platform *p = opaque;

	if (p->env.request_exit)
		p->env.request_exit(p->env.opaque, PLATFORM_EXIT_RESET, 0);
}

/* ---- port 0x80 ---- */

static void post_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	memset(data, 0xff, len);
}

static void post_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	/* POST codes and the kernel's io_delay: accepted and dropped, deliberately silent. */
}

static const struct bus_ops post_ops = { .read = post_read, .write = post_write };

/*
 * ---- port 0x61 ----
 * Bit 0 gates PIT channel 2, bit 1 enables the speaker, bit 5 reads channel 2's output,
 * bit 4 toggles with DRAM refresh. Linux's PIT-based TSC calibration polls bit 5, so it must
 * follow the in-kernel PIT. KVM emulates this port itself when the PIT is created with
 * KVM_PIT_SPEAKER_DUMMY (arch/x86/kvm/i8254.c), and then these handlers never run. If the
 * core did not pass that flag, this fallback computes OUT2 from KVM_GET_PIT2 the way KVM
 * does (gate changes are not propagated: KVM's mode 0/1 output ignores the gate anyway).
 */
static int pit2_out(struct platform *p)
{
	struct kvm_pit_state2 ps;
	const struct kvm_pit_channel_state *c;
	struct timespec ts;
	uint64_t count, elapsed, d;
	int64_t now;

	if (p->env.vm_fd < 0 || kvm_ioctl(p->env.vm_fd, KVM_GET_PIT2, &ps) < 0)
		return 0;
	c = &ps.channels[2];
	count = c->count ? c->count : 0x10000;
	clock_gettime(CLOCK_MONOTONIC, &ts);	/* KVM's count_load_time is ktime_get() */
	now = (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
	elapsed = now > c->count_load_time ? (uint64_t)(now - c->count_load_time) : 0;
	d = elapsed / 1000000000ull * 1193182ull + elapsed % 1000000000ull * 1193182ull / 1000000000ull;
	switch (c->mode) {
	case 0:
	case 1:
		return d >= count;
	case 2:
		return (d % count) != 0 || d == 0;
	case 3:
		return (d % count) < ((count + 1) >> 1);
	case 4:
	case 5:
		return d != count;
	default:
		return 0;
	}
}

static void port61_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct platform *p = opaque;
	struct timespec ts;
	uint8_t v;

	if (!len)
		return;
	if (!p->port61_warned) {
		p->port61_warned = 1;	/* racy between vCPUs at worst: a second warning */
		log_warn("port 0x61 reached user space: create the PIT with KVM_PIT_SPEAKER_DUMMY "
			 "so KVM emulates it; using a slower fallback");
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	v = (uint8_t)((p->port61 & 0x03) | (((uint64_t)ts.tv_nsec >> 14) & 1) << 4 |
		      (pit2_out(p) ? 0x20 : 0));
	memset(data, 0, len);
	*(uint8_t *)data = v;
}

static void port61_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct platform *p = opaque;

	if (len)
		p->port61 = *(const uint8_t *)data & 0x0f;
}

static const struct bus_ops port61_ops = { .read = port61_read, .write = port61_write };

/* ---- registration ---- */

static int reg(struct platform *p, uint64_t base, uint64_t len, const char *name,
	       const struct bus_ops *ops, void *opaque)
{
	int ret;

	BUG_ON(p->nr_ranges == MAX_RANGES);
	ret = bus_register(p->env.pio, base, len, name, ops, opaque);
	if (ret < 0)
		return ret;		/* bus_register logged the overlap */
	p->ranges[p->nr_ranges++] = base;
	return 0;
}

static void unregister_all(struct platform *p)
{
	while (p->nr_ranges)
		bus_unregister(p->env.pio, p->ranges[--p->nr_ranges]);
}

int platform_create(const struct platform_env *env, struct platform **out)
{
	struct platform *p;
	int ret;

	if (!env->pio || env->nr_cpus == 0 || env->nr_cpus > 255)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->env = *env;

	ret = acpi_create(&p->acpi);
	if (ret < 0)
		goto err;
	{
		struct serial_config sc = {
			.name = "com1", .out_fd = env->console_out_fd,
			.irq = { irq_line_set, p, PLATFORM_COM1_IRQ },
		};
		ret = serial_create(&sc, &p->com1);
		if (ret < 0)
			goto err;
	}
	ret = rtc_create(NULL, &p->rtc);
	if (ret < 0)
		goto err;
	{
		struct i8042_config kc = { .reset = kbc_reset, .opaque = p };

		ret = i8042_create(&kc, &p->kbc);
		if (ret < 0)
			goto err;
	}
	{
		struct pm_config pc = {
			.sci = { irq_line_set, p, PLATFORM_SCI_IRQ },
			.request_exit = env->request_exit, .opaque = env->opaque,
		};
		ret = pm_create(&pc, &p->pm);
		if (ret < 0)
			goto err;
	}
	p->de.request_exit = env->request_exit;
	p->de.opaque = env->opaque;

	if ((ret = reg(p, PLATFORM_COM1_PORT, SERIAL_NR_REGS, "com1", &serial_ops, p->com1)) ||
	    (ret = reg(p, PLATFORM_RTC_PORT, RTC_NR_PORTS, "rtc", &rtc_ops, p->rtc)) ||
	    (ret = reg(p, I8042_DATA_PORT, 1, "i8042-data", &i8042_data_ops, p->kbc)) ||
	    (ret = reg(p, I8042_CMD_PORT, 1, "i8042-cmd", &i8042_cmd_ops, p->kbc)) ||
	    (ret = reg(p, PLATFORM_PM_PORT, PM_NR_PORTS, "acpi-pm", &pm_ops, p->pm)) ||
	    (ret = reg(p, PLATFORM_PORT_RESET_CONTROL, 1, "reset-control", &pm_cf9_ops, p->pm)) ||
	    (ret = reg(p, PLATFORM_PORT_DEBUG_EXIT, DEBUGEXIT_NR_PORTS, "debug-exit",
		       &debugexit_ops, &p->de)) ||
	    (ret = reg(p, PORT_POST, 1, "post", &post_ops, p)) ||
	    (ret = reg(p, PORT_SPEAKER, 1, "speaker", &port61_ops, p)))
		goto err;

	*out = p;
	return 0;
err:
	log_err("platform setup: %s", strerror(-ret));
	platform_destroy(p);
	return ret;
}

void platform_destroy(struct platform *p)
{
	if (!p)
		return;
	unregister_all(p);
	free(p->loaded);
	pm_destroy(p->pm);
	i8042_destroy(p->kbc);
	rtc_destroy(p->rtc);
	serial_destroy(p->com1);
	acpi_destroy(p->acpi);
	free(p);
}

struct acpi *platform_acpi(struct platform *p)
{
	return p->acpi;
}

int platform_write_acpi(struct platform *p, uint64_t *rsdp_gpa)
{
	struct acpi_platform_info info = {
		.nr_cpus = p->env.nr_cpus,
		.lapic_base = LAYOUT_LAPIC_BASE,
		.ioapic_base = LAYOUT_IOAPIC_BASE,
		.ioapic_id = 0,
		.sci_irq = PLATFORM_SCI_IRQ,
		.pm1a_evt_port = PLATFORM_PM_PORT + PM_EVT_OFF,
		.pm1a_cnt_port = PLATFORM_PM_PORT + PM_CNT_OFF,
		.pm_tmr_port = PLATFORM_PM_PORT + PM_TMR_OFF,
		.reset_port = PLATFORM_PM_PORT + PM_RESET_OFF,
		.reset_value = PM_RESET_VALUE,
		.slp_typ_s5 = PM_SLP_TYP_S5,
		.rtc_century_index = RTC_CENTURY_INDEX,
		.com1_port = PLATFORM_COM1_PORT,
		.com1_irq = PLATFORM_COM1_IRQ,
		.rtc_port = PLATFORM_RTC_PORT,
		.rtc_irq = PLATFORM_RTC_IRQ,
	};
	size_t rsdp_off, used;
	uint8_t *buf;
	void *dst;
	int ret;

	if (!p->env.mem)
		return -EINVAL;
	buf = malloc(LAYOUT_ACPI_SIZE);
	if (!buf)
		return -ENOMEM;
	ret = acpi_build(p->acpi, &info, LAYOUT_ACPI_BASE, buf, LAYOUT_ACPI_SIZE, &rsdp_off, &used);
	if (ret < 0)
		goto out;
	dst = guest_mem_ptr(p->env.mem, LAYOUT_ACPI_BASE, LAYOUT_ACPI_SIZE);
	if (!dst) {
		log_err("ACPI window 0x%llx+0x%llx is not guest RAM",
			(unsigned long long)LAYOUT_ACPI_BASE, (unsigned long long)LAYOUT_ACPI_SIZE);
		ret = -ERANGE;
		goto out;
	}
	memcpy(dst, buf, LAYOUT_ACPI_SIZE);	/* whole window: stale bytes would confuse scans */
	guest_mem_mark_dirty(p->env.mem, LAYOUT_ACPI_BASE, LAYOUT_ACPI_SIZE);
	*rsdp_gpa = LAYOUT_ACPI_BASE + rsdp_off;
	log_dbg("ACPI tables: %zu bytes at 0x%llx", used, (unsigned long long)LAYOUT_ACPI_BASE);
out:
	free(buf);
	return ret;
}

/* ---- migration state: one section, one nested list per device ---- */

enum { PLAT_T_COM1 = 1, PLAT_T_RTC, PLAT_T_PM, PLAT_T_I8042 };

static int state_save(void *opaque, struct state_writer *w)
{
	struct platform *p = opaque;
	int ret;

	sw_nest_begin(w, PLAT_T_COM1, STATE_F_REQUIRED);
	ret = serial_state_save(p->com1, w);
	sw_nest_end(w);
	if (ret < 0)
		return ret;
	sw_nest_begin(w, PLAT_T_RTC, STATE_F_REQUIRED);
	rtc_state_save(p->rtc, w);
	sw_nest_end(w);
	sw_nest_begin(w, PLAT_T_PM, STATE_F_REQUIRED);
	pm_state_save(p->pm, w);
	sw_nest_end(w);
	sw_nest_begin(w, PLAT_T_I8042, 0);
	i8042_state_save(p->kbc, w);
	sw_nest_end(w);
	return sw_error(w);
}

static int state_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct platform *p = opaque;
	struct platform_state *st;
	struct state_field f;
	struct state_reader sub;
	unsigned int seen = 0;
	int ret;

	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	/* Defaults for a device missing from the stream: its power-on state. */
	st->com1.lcr = 0x03;
	st->rtc.cmos[0x0a] = 0x26;
	st->rtc.cmos[0x0b] = 0x02;
	st->kbc.ctr = 0x44;
	st->kbc.status = 0x04;
	st->kbc.outp = 0x03;
	while ((ret = sr_next(r, &f)) > 0) {
		if (f.tag >= PLAT_T_COM1 && f.tag <= PLAT_T_I8042) {
			ret = sr_nested(r, &f, &sub);
			if (ret < 0)
				break;
			seen |= 1u << f.tag;
		}
		switch (f.tag) {
		case PLAT_T_COM1:  ret = serial_state_parse(&sub, &st->com1); break;
		case PLAT_T_RTC:   ret = rtc_state_parse(&sub, &st->rtc); break;
		case PLAT_T_PM:    ret = pm_state_parse(&sub, &st->pm); break;
		case PLAT_T_I8042: ret = i8042_state_parse(&sub, &st->kbc); break;
		default:	   ret = sr_skip_unknown(r, &f); break;
		}
		if (ret < 0)
			break;
	}
	if (ret == 0 && (seen & (1u << PLAT_T_COM1 | 1u << PLAT_T_RTC | 1u << PLAT_T_PM)) !=
			(1u << PLAT_T_COM1 | 1u << PLAT_T_RTC | 1u << PLAT_T_PM)) {
		log_err("platform state: a required device section is missing");
		ret = -EBADMSG;
	}
	if (ret < 0) {
		free(st);
		return ret;
	}
	free(p->loaded);
	p->loaded = st;
	return 0;
}

static int state_post_load(void *opaque)
{
	struct platform *p = opaque;
	struct platform_state *st = p->loaded;

	if (!st)
		return 0;
	serial_state_apply(p->com1, &st->com1);
	rtc_state_apply(p->rtc, &st->rtc);
	pm_state_apply(p->pm, &st->pm);
	i8042_state_apply(p->kbc, &st->kbc);
	p->loaded = NULL;
	free(st);
	return 0;
}

static const struct state_ops platform_state_ops = {
	.name = "platform",
	.version = 1,
	.min_version = 1,
	.save = state_save,
	.load = state_load,
	.post_load = state_post_load,
};

int platform_state_register(struct platform *p, struct state_registry *reg)
{
	return state_register(reg, "platform", &platform_state_ops, p);
}

uint8_t platform_reset_control_read(struct platform *p)
{
	return pm_cf9_read(p->pm);
}

void platform_reset_control_write(struct platform *p, uint8_t val)
{
	pm_cf9_write(p->pm, val);
}

void platform_console_input(struct platform *p, const uint8_t *buf, size_t len)
{
	size_t n = serial_receive(p->com1, buf, len);

	if (n < len)
		log_ratelimited(LOG_WARN, "console input: guest not reading, dropped %zu bytes",
				len - n);
}

void platform_power_button(struct platform *p)
{
	log_info("ACPI power button pressed");
	pm_power_button(p->pm);
}
