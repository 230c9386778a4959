// SPDX-License-Identifier: MIT
/*
 * 16550A UART: the register behaviour Linux's 8250 driver relies on (autoconfig probes,
 * DLAB, FIFO, LSR, loopback/MSR), IIR priorities, and the interrupt line, recorded through
 * a fake irq callback. Output goes to a pipe the test reads back.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/dev/serial.h"

struct irq_rec {
	int level;
	unsigned int raises, lowers, calls;
	unsigned int gsi;
};

static void rec_set(void *opaque, unsigned int gsi, int level)
{
	struct irq_rec *r = opaque;

	r->calls++;
	r->gsi = gsi;
	if (level && !r->level)
		r->raises++;
	if (!level && r->level)
		r->lowers++;
	r->level = level;
}

struct fx {
	struct serial *s;
	struct irq_rec irq;
	int pipe[2];
};

static int setup(void **state)
{
	static struct fx f;
	struct serial_config cfg;

	memset(&f, 0, sizeof(f));
	if (pipe2(f.pipe, O_NONBLOCK) < 0)
		return -1;
	cfg = (struct serial_config){ .name = "test", .out_fd = f.pipe[1],
				      .irq = { rec_set, &f.irq, 4 } };
	if (serial_create(&cfg, &f.s) < 0)
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	serial_destroy(f->s);
	close(f->pipe[0]);
	close(f->pipe[1]);
	return 0;
}

static uint8_t rd(struct fx *f, unsigned int reg)
{
	uint8_t v = 0;

	serial_ops.read(f->s, reg, &v, 1);
	return v;
}

static void wr(struct fx *f, unsigned int reg, uint8_t v)
{
	serial_ops.write(f->s, reg, &v, 1);
}

enum { RBR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

static void test_probe_like_linux(void **state)
{
	struct fx *f = *state;

	/* autoconfig: IER bits 7:4 read 0, 3:0 read back. */
	wr(f, IER, 0x00);
	assert_int_equal(rd(f, IER) & 0x0f, 0x00);
	wr(f, IER, 0x0f);
	assert_int_equal(rd(f, IER) & 0x0f, 0x0f);
	wr(f, IER, 0xf0);
	assert_int_equal(rd(f, IER), 0x00);
	/* Loopback test: MCR = LOOP|OUT2|RTS -> MSR upper nibble DCD|CTS = 0x90. */
	wr(f, MCR, 0x1a);
	assert_int_equal(rd(f, MSR) & 0xf0, 0x90);
	wr(f, MCR, 0x00);
	/* FIFO: IIR bits 7:6 = 11 identify a 16550A; bit 5 (64-byte FIFO) stays 0. */
	wr(f, FCR, 0x01);
	assert_int_equal(rd(f, IIR) >> 6, 3);
	wr(f, FCR, 0x21);
	assert_int_equal((rd(f, IIR) >> 5) & 1, 0);
	wr(f, FCR, 0x00);
	assert_int_equal(rd(f, IIR) >> 6, 0);
	/* With DLAB set, offset 2 still reads IIR (the EFR probe must not see 0). */
	wr(f, FCR, 0x01);
	wr(f, LCR, 0x80);
	assert_int_not_equal(rd(f, IIR), 0);
	wr(f, LCR, 0x03);
	/* Scratch */
	wr(f, SCR, 0xa5);
	assert_int_equal(rd(f, SCR), 0xa5);
}

static void test_dlab_divisor(void **state)
{
	struct fx *f = *state;

	wr(f, IER, 0x05);
	wr(f, LCR, 0x83);
	wr(f, 0, 0x01);		/* DLL: 115200 baud */
	wr(f, 1, 0x00);		/* DLM */
	assert_int_equal(rd(f, 0), 0x01);
	assert_int_equal(rd(f, 1), 0x00);
	wr(f, LCR, 0x03);
	assert_int_equal(rd(f, IER), 0x05);	/* IER untouched by the divisor writes */
	assert_int_equal(rd(f, LCR), 0x03);
}

static void test_tx_output_and_lsr(void **state)
{
	struct fx *f = *state;
	char buf[16] = { 0 };

	assert_int_equal(rd(f, LSR) & 0x61, 0x60);	/* THRE|TEMT, no DR */
	wr(f, 0, 'h');
	wr(f, 0, 'i');
	assert_int_equal(read(f->pipe[0], buf, sizeof(buf)), 2);
	assert_string_equal(buf, "hi");
	assert_int_equal(rd(f, LSR) & 0x60, 0x60);
}

static void test_rx_fifo_and_irq(void **state)
{
	struct fx *f = *state;
	struct serial_stats st;

	wr(f, FCR, 0x07);			/* FIFO on, cleared */
	wr(f, IER, 0x01);			/* RDI */
	assert_int_equal(f->irq.level, 0);
	assert_int_equal(rd(f, IIR), 0xc1);	/* FIFO on, nothing pending */
	assert_int_equal(serial_receive(f->s, (const uint8_t *)"ab", 2), 2);
	assert_int_equal(f->irq.level, 1);
	assert_int_equal(f->irq.gsi, 4);
	assert_int_equal(rd(f, IIR), 0xc4);	/* received data */
	assert_int_equal(rd(f, LSR) & 0x01, 1);
	assert_int_equal(rd(f, RBR), 'a');
	assert_int_equal(f->irq.level, 1);	/* one byte left */
	assert_int_equal(rd(f, RBR), 'b');
	assert_int_equal(f->irq.level, 0);	/* drained: line drops */
	assert_int_equal(rd(f, LSR) & 0x01, 0);
	/* The next byte makes a new rising edge (ISA IRQs are edge-triggered). */
	serial_receive(f->s, (const uint8_t *)"c", 1);
	assert_int_equal(f->irq.raises, 2);
	/* FCR clear-RX empties the FIFO and drops the line. */
	wr(f, FCR, 0x03);
	assert_int_equal(rd(f, LSR) & 0x01, 0);
	assert_int_equal(f->irq.level, 0);
	serial_get_stats(f->s, &st);
	assert_int_equal(st.rx_bytes, 3);
}

static void test_iir_priorities(void **state)
{
	struct fx *f = *state;
	uint8_t big[SERIAL_RX_SIZE + 1];

	wr(f, FCR, 0x01);
	serial_receive(f->s, (const uint8_t *)"x", 1);
	/* Enable RDI and THRI together: THRE arms, but received data has priority. */
	wr(f, IER, 0x03);
	assert_int_equal(rd(f, IIR) & 0x0f, 0x04);
	assert_int_equal(rd(f, RBR), 'x');
	/* Now THRE; reading IIR acknowledges it. */
	assert_int_equal(rd(f, IIR) & 0x0f, 0x02);
	assert_int_equal(rd(f, IIR) & 0x0f, 0x01);
	assert_int_equal(f->irq.level, 0);
	/* A THR write re-arms THRE (transmission is instant). */
	wr(f, 0, 'y');
	assert_int_equal(f->irq.level, 1);
	assert_int_equal(rd(f, IIR) & 0x0f, 0x02);
	assert_int_equal(f->irq.level, 0);
	/* Overrun: line status has the highest priority once RLSI is enabled. */
	memset(big, 'z', sizeof(big));
	assert_int_equal(serial_receive(f->s, big, sizeof(big)), SERIAL_RX_SIZE);
	wr(f, IER, 0x07);
	assert_int_equal(rd(f, IIR) & 0x0f, 0x06);
	assert_int_equal(rd(f, LSR) & 0x03, 0x03);	/* OE|DR */
	assert_int_equal(rd(f, LSR) & 0x02, 0x00);	/* OE cleared by the read */
	assert_int_equal(rd(f, IIR) & 0x0f, 0x04);
}

/* Linux startup's THRE test: THRI 0->1 with an empty transmitter raises THRE each time. */
static void test_thre_reassert(void **state)
{
	struct fx *f = *state;

	wr(f, IER, 0x02);
	assert_int_equal(rd(f, IIR) & 0x01, 0);		/* iir1: interrupt */
	wr(f, IER, 0x00);
	wr(f, IER, 0x02);
	assert_int_equal(rd(f, IIR) & 0x01, 0);		/* iir: again, so no UART_BUG_THRE */
	wr(f, IER, 0x00);
	assert_int_equal(f->irq.level, 0);
}

static void test_loopback(void **state)
{
	struct fx *f = *state;
	char buf[4];

	wr(f, MCR, 0x10);
	wr(f, 0, 'L');
	assert_int_equal(read(f->pipe[0], buf, sizeof(buf)), -1);	/* nothing on the wire */
	assert_int_equal(rd(f, LSR) & 0x01, 1);
	assert_int_equal(rd(f, RBR), 'L');
	/* Host input is not connected while looping back. */
	assert_int_equal(serial_receive(f->s, (const uint8_t *)"q", 1), 0);
	/* Modem status deltas: DTR 0->1 sets DSR and DDSR; MSI interrupt when enabled. */
	rd(f, MSR);
	wr(f, IER, 0x08);
	wr(f, MCR, 0x11);
	assert_int_equal(f->irq.level, 1);
	assert_int_equal(rd(f, IIR) & 0x0f, 0x00);
	assert_int_equal(rd(f, MSR), 0x22);		/* DSR | DDSR */
	assert_int_equal(rd(f, MSR), 0x20);		/* deltas clear on read */
	assert_int_equal(f->irq.level, 0);
	wr(f, MCR, 0x00);
	assert_int_equal(rd(f, MSR) & 0xf0, 0xb0);	/* back on the "cable": DCD|DSR|CTS */
}

/*
 * A paste longer than Linux's per-call receive budget (256 characters in
 * serial8250_rx_chars): the driver's IRQ loop re-reads IIR until NO_INT, so everything must
 * come out and the line must end low, ready for the next edge.
 */
static void test_long_burst_like_linux_isr(void **state)
{
	struct fx *f = *state;
	uint8_t in[1000];
	size_t got = 0, passes = 0;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)('a' + i % 26);
	wr(f, FCR, 0x07);
	wr(f, IER, 0x05);
	assert_int_equal(serial_receive(f->s, in, sizeof(in)), sizeof(in));
	assert_int_equal(f->irq.level, 1);
	while (!(rd(f, IIR) & 0x01)) {
		unsigned int budget = 256;

		passes++;
		while ((rd(f, LSR) & 0x01) && budget--) {
			assert_int_equal(rd(f, RBR), in[got]);
			got++;
		}
		assert_true(passes < 100);
	}
	assert_int_equal(got, sizeof(in));
	assert_int_equal(passes, 4);
	assert_int_equal(f->irq.level, 0);
	assert_int_equal(f->irq.raises, 1);
}

static void test_hostile_accesses(void **state)
{
	struct fx *f = *state;
	uint8_t v[8];

	/* Wide and out-of-range accesses never crash and read sensibly. */
	memset(v, 0, sizeof(v));
	serial_ops.read(f->s, 4, v, 8);
	assert_int_equal(v[4], 0xff);		/* beyond register 7 */
	serial_ops.write(f->s, 6, v, 4);
	wr(f, LSR, 0x00);			/* LSR writes ignored */
	assert_int_equal(rd(f, LSR) & 0x60, 0x60);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_probe_like_linux, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dlab_divisor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_output_and_lsr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_fifo_and_irq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iir_priorities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thre_reassert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_burst_like_linux_isr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_accesses, setup, teardown),
	};
	return cmocka_run_group_tests_name("serial", tests, NULL, NULL);
}
