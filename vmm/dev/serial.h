/* SPDX-License-Identifier: MIT */
/*
 * 16550A UART (8 registers at one I/O base; COM1 = 0x3F8, IRQ 4). Output goes straight to a
 * file descriptor (transmission is instantaneous, so THRE/TEMT are always set); input is fed
 * by the main loop into a receive FIFO. Interrupts: received data, THR empty, line status and
 * modem status, with the 16550 priorities; the line is driven through a struct platform_irq
 * (ISA IRQs are edge-triggered: the level follows "an interrupt is pending", so every new
 * pending interrupt after the guest drained the previous one makes a rising edge).
 *
 * Threading: serial_ops handlers run on vCPU threads, serial_receive() on the main loop;
 * both take the device lock, which is a leaf except for the irq callback and write(2).
 */
#ifndef VMM_DEV_SERIAL_H
#define VMM_DEV_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/platform.h"

#define SERIAL_NR_REGS	8
#define SERIAL_RX_SIZE	4096	/* receive buffer (a real 16550 has 16; Linux does not care) */

struct serial_config {
	const char *name;		/* "com1", for logs */
	int out_fd;			/* transmitted bytes; -1 = discard */
	struct platform_irq irq;
};

struct serial;

int  serial_create(const struct serial_config *cfg, struct serial **out);
void serial_destroy(struct serial *s);

/* Register block handlers; opaque = struct serial *, offsets 0..7. */
extern const struct bus_ops serial_ops;

/* Queue received bytes (main loop). Returns how many fitted; the rest are dropped. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);

/*
 * Migration state: the guest-visible registers and the receive FIFO. Two-phase so a load
 * that fails leaves the device untouched: parse into a struct serial_state, then apply.
 * Called with the vCPUs paused (any thread).
 */
struct serial_state {
	uint8_t ier, fcr, lcr, mcr, scr, dll, dlm, lsr_err, msr, thri_pending;
	uint32_t rx_count;
	uint8_t rx[SERIAL_RX_SIZE];
};
struct state_writer;
struct state_reader;
/* Writes fields into @w (possibly inside a nested list); 0 or -ENOMEM, writer errors stay in @w. */
int  serial_state_save(struct serial *s, struct state_writer *w);
int  serial_state_parse(struct state_reader *r, struct serial_state *st);
/* Apply a parsed state and drive the IRQ line to match it. */
void serial_state_apply(struct serial *s, const struct serial_state *st);

/* Counters for status/tests. */
struct serial_stats {
	uint64_t tx_bytes, rx_bytes, rx_dropped, irqs_raised;
};
void serial_get_stats(struct serial *s, struct serial_stats *st);

#endif
