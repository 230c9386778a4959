/* SPDX-License-Identifier: MIT */
/*
 * The legacy PC platform around the vCPUs: ACPI tables and the fixed ACPI hardware
 * (PM1 event/control blocks: power button, sleep/power-off; reset register), the 16550 UART
 * on COM1, the CMOS/RTC, a minimal i8042 (for the reset line) and the debug-exit port used by
 * tiny test guests. This is the seam between the VM core (vm.c, which owns KVM and the
 * vCPUs) and these devices: the core fills a struct platform_env and calls platform_create();
 * the platform never includes vm.h.
 *
 * Threading: device register handlers run on vCPU threads (via the buses);
 * platform_console_input() and platform_power_button() run on the main loop thread.
 */
#ifndef VMM_PLATFORM_H
#define VMM_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

struct acpi;
struct bus;
struct state_registry;
struct guest_mem;
struct platform;

/*
 * An interrupt input a platform device drives (ISA IRQ = GSI here). @set is called with the
 * device's lock held, only when the level changes; the platform implements it with
 * KVM_IRQ_LINE, unit tests with a recorder.
 */
struct platform_irq {
	void (*set)(void *opaque, unsigned int gsi, int level);
	void *opaque;
	unsigned int gsi;
};

/* Fixed legacy resources (what the DSDT/FADT describe). */
#define PLATFORM_COM1_PORT		0x3f8
#define PLATFORM_COM1_IRQ		4
#define PLATFORM_RTC_PORT		0x70
#define PLATFORM_RTC_IRQ		8
#define PLATFORM_SCI_IRQ		9
#define PLATFORM_PM_PORT		0x600	/* PM1a_EVT +0, PM1a_CNT +4, PM_TMR +8, RESET +0xc */
#define PLATFORM_PORT_RESET_CONTROL	0xcf9
#define PLATFORM_PORT_DEBUG_EXIT	0xf4

enum platform_exit {
	PLATFORM_EXIT_POWEROFF,		/* ACPI S5 written to PM1a_CNT */
	PLATFORM_EXIT_RESET,		/* FADT reset register / i8042 pulse / 0xCF9 */
	PLATFORM_EXIT_DEBUG,		/* tiny test guest wrote a status to the debug-exit port */
};

struct platform_env {
	struct bus *pio, *mmio;
	struct guest_mem *mem;
	int vm_fd;			/* for KVM_IRQ_LINE */
	unsigned int nr_cpus;		/* APIC ids are 0..nr_cpus-1 */
	int console_out_fd;		/* UART output goes here (stdout or a file) */
	/*
	 * The guest asked to power off or reset, or a test guest wrote @code to the debug-exit
	 * port. Called on a vCPU thread; must only set a flag and kick the vCPUs.
	 */
	void (*request_exit)(void *opaque, enum platform_exit why, int code);
	void *opaque;
};

int  platform_create(const struct platform_env *env, struct platform **out);
void platform_destroy(struct platform *p);

/*
 * Write the ACPI tables (RSDP, XSDT, FADT, FACS, MADT, DSDT, and MCFG once PCI exists) into
 * guest RAM at LAYOUT_ACPI_BASE; *rsdp_gpa receives the RSDP address for boot_params.
 */
int  platform_write_acpi(struct platform *p, uint64_t *rsdp_gpa);

/*
 * The ACPI builder, so other modules (PCI: the PCI0 host bridge in the DSDT, MCFG) can add
 * content before platform_write_acpi(); see vmm/acpi/acpi.h for the contract. Never NULL.
 */
struct acpi *platform_acpi(struct platform *p);

/*
 * Port 0xCF9 (reset control) lies inside the PCI type-1 window 0xCF8..0xCFF. The platform
 * registers [0xCF9, 1) itself; a PCI host bridge that wants to claim 0xCF8..0xCFF as one range
 * must bus_unregister(pio, PLATFORM_PORT_RESET_CONTROL) first and forward 1-byte accesses at
 * 0xCF9 to these (any vCPU thread).
 */
uint8_t platform_reset_control_read(struct platform *p);
void    platform_reset_control_write(struct platform *p, uint8_t val);

/*
 * Register the devices' state (UART registers and receive FIFO, CMOS/RTC, PM1/PM timer,
 * i8042) as one section, name "platform", id "platform", for snapshots and migration.
 * Loading parses everything first and applies it in post_load, re-driving the COM1 and SCI
 * lines after the irqchip state is in. Main loop, before any save/load. 0 or -errno.
 */
int  platform_state_register(struct platform *p, struct state_registry *reg);

/* Bytes typed on the console (main loop). */
void platform_console_input(struct platform *p, const uint8_t *buf, size_t len);
/* Press the ACPI power button (SCI + PWRBTN_STS): the guest shuts down cleanly. */
void platform_power_button(struct platform *p);

#endif
