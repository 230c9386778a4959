/* SPDX-License-Identifier: MIT */
/*
 * Minimal i8042 keyboard controller at 0x60 (data) and 0x64 (status/command): enough for
 * firmware-style probing (self tests, command byte, keyboard reset/identify answers) and,
 * above all, the reset line: command 0xFE (pulse output port bit 0 low) or writing an output
 * port value with bit 0 clear resets the machine. No keyboard or mouse is attached and no
 * IRQ 1/12 is raised; the FADT does not advertise an 8042, so Linux does not probe it and
 * only uses it for "reboot" (kb_wait on status bit 1, then 0xFE to 0x64).
 *
 * Threading: handlers run on vCPU threads under the device lock; @reset is called with the
 * lock held and must only set a flag and kick the vCPUs.
 */
#ifndef VMM_DEV_I8042_H
#define VMM_DEV_I8042_H

#include "vmm/bus.h"

#define I8042_DATA_PORT		0x60
#define I8042_CMD_PORT		0x64

struct i8042_config {
	void (*reset)(void *opaque);
	void *opaque;
};

struct i8042;

int  i8042_create(const struct i8042_config *cfg, struct i8042 **out);
void i8042_destroy(struct i8042 *k);

/* Port 0x60 (one byte) and port 0x64 (one byte); opaque = struct i8042 *. */
extern const struct bus_ops i8042_data_ops;
extern const struct bus_ops i8042_cmd_ops;

/* Migration state (two-phase; vCPUs paused). */
struct i8042_state {
	uint8_t ctr, status, outp, pending, kbd_pending;
	uint8_t outq_len;
	uint8_t outq[16];
};
struct state_writer;
struct state_reader;
int  i8042_state_save(struct i8042 *k, struct state_writer *w);
int  i8042_state_parse(struct state_reader *r, struct i8042_state *st);
void i8042_state_apply(struct i8042 *k, const struct i8042_state *st);

#endif
