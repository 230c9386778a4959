// SPDX-License-Identifier: MIT
/*
 * 16550A UART model (see serial.h). Register semantics follow the TI/National PC16550D data
 * sheet; the details Linux's 8250 driver depends on are noted where they are implemented:
 * autoconfig (IER upper bits read 0, IIR bits 7:6 = 11 with the FIFO on and bit 5 = 0, MCR
 * loopback maps DTR/RTS/OUT1/OUT2 to DSR/CTS/RI/DCD) and startup's THRE tests (enabling
 * THRI while the transmitter is empty raises THRE at once; reading IIR while THRE is the
 * reported source clears it).
 */
#define LOG_TAG "serial"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/dev/serial.h"
#include "vmm/lib/log.h"
#include "vmm/state.h"

/* Register offsets */
#define UART_RBR	0	/* read, DLAB=0 */
#define UART_THR	0	/* write, DLAB=0 */
#define UART_DLL	0	/* DLAB=1 */
#define UART_IER	1	/* DLAB=0 */
#define UART_DLM	1	/* DLAB=1 */
#define UART_IIR	2	/* read */
#define UART_FCR	2	/* write */
#define UART_LCR	3
#define UART_MCR	4
#define UART_LSR	5
#define UART_MSR	6
#define UART_SCR	7

#define IER_RDI		0x01
#define IER_THRI	0x02
#define IER_RLSI	0x04
#define IER_MSI		0x08

#define IIR_NO_INT	0x01
#define IIR_MSI		0x00
#define IIR_THRI	0x02
#define IIR_RDI		0x04
#define IIR_RLSI	0x06
#define IIR_FIFO_ON	0xc0

#define FCR_ENABLE	0x01
#define FCR_CLEAR_RX	0x02
#define FCR_CLEAR_TX	0x04

#define LCR_DLAB	0x80

#define MCR_DTR		0x01
#define MCR_RTS		0x02
#define MCR_OUT1	0x04
#define MCR_OUT2	0x08
#define MCR_LOOP	0x10

#define LSR_DR		0x01
#define LSR_OE		0x02
#define LSR_PE		0x04
#define LSR_FE		0x08
#define LSR_BI		0x10
#define LSR_THRE	0x20
#define LSR_TEMT	0x40
#define LSR_ERRORS	(LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS	0x01
#define MSR_DDSR	0x02
#define MSR_TERI	0x04
#define MSR_DDCD	0x08
#define MSR_CTS		0x10
#define MSR_DSR		0x20
#define MSR_RI		0x40
#define MSR_DCD		0x80
#define MSR_DELTAS	0x0f

struct serial {
	pthread_mutex_t lock;	/* protects everything below; leaf (irq callback, write(2) inside) */
	char name[16];
	int out_fd;
	struct platform_irq irq;
	int irq_level;

	uint8_t ier, fcr, lcr, mcr, scr, dll, dlm;
	uint8_t lsr_err;	/* OE/BI latched until LSR is read */
	uint8_t msr;		/* modem status incl. delta bits */
	int thri_pending;	/* THR-empty interrupt armed (cleared by IIR read or THR write) */

	uint8_t rx[SERIAL_RX_SIZE];
	size_t rx_head, rx_count;

	struct serial_stats stats;
};

/* Modem status lines as seen by the UART: looped back from MCR, or a cable that is always up. */
static uint8_t msr_lines(const struct serial *s)
{
	uint8_t m = 0;

	if (!(s->mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;
	if (s->mcr & MCR_DTR)
		m |= MSR_DSR;
	if (s->mcr & MCR_RTS)
		m |= MSR_CTS;
	if (s->mcr & MCR_OUT1)
		m |= MSR_RI;
	if (s->mcr & MCR_OUT2)
		m |= MSR_DCD;
	return m;
}

/* Recompute MSR after the lines changed, latching delta bits (RI: trailing edge only). */
static void msr_update(struct serial *s)
{
	uint8_t old = s->msr & 0xf0, now = msr_lines(s), d = 0;

	if ((old ^ now) & MSR_CTS)
		d |= MSR_DCTS;
	if ((old ^ now) & MSR_DSR)
		d |= MSR_DDSR;
	if ((old & MSR_RI) && !(now & MSR_RI))
		d |= MSR_TERI;
	if ((old ^ now) & MSR_DCD)
		d |= MSR_DDCD;
	s->msr = (uint8_t)(now | (s->msr & MSR_DELTAS) | d);
}

/* The IIR value for the highest-priority pending interrupt (no side effects). */
static uint8_t iir_compute(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO_ON : 0;

	if ((s->ier & IER_RLSI) && (s->lsr_err & LSR_ERRORS))
		return fifo | IIR_RLSI;
	if ((s->ier & IER_RDI) && s->rx_count)
		return fifo | IIR_RDI;
	if ((s->ier & IER_THRI) && s->thri_pending)
		return fifo | IIR_THRI;
	if ((s->ier & IER_MSI) && (s->msr & MSR_DELTAS))
		return fifo | IIR_MSI;
	return fifo | IIR_NO_INT;
}

static void irq_update_locked(struct serial *s)
{
	int level = !(iir_compute(s) & IIR_NO_INT);

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	if (level)
		s->stats.irqs_raised++;
	if (s->irq.set)
		s->irq.set(s->irq.opaque, s->irq.gsi, level);
}

static void rx_clear(struct serial *s)
{
	s->rx_head = 0;
	s->rx_count = 0;
}

static int rx_push_locked(struct serial *s, uint8_t c)
{
	if (s->rx_count == SERIAL_RX_SIZE) {
		s->lsr_err |= LSR_OE;
		s->stats.rx_dropped++;
		return -ENOSPC;
	}
	s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_SIZE] = c;
	s->rx_count++;
	s->stats.rx_bytes++;
	return 0;
}

static void tx_locked(struct serial *s, uint8_t c)
{
	if (s->mcr & MCR_LOOP) {
		rx_push_locked(s, c);	/* loopback: the transmitter feeds the receiver */
	} else if (s->out_fd >= 0) {
		ssize_t n;

		do {
			n = write(s->out_fd, &c, 1);
		} while (n < 0 && errno == EINTR);
		if (n < 0)
			log_ratelimited(LOG_WARN, "%s: console write: %s", s->name, strerror(errno));
	}
	s->stats.tx_bytes++;
	/* Transmission is instantaneous: THR is empty again and THRE re-arms. */
	s->thri_pending = 1;
}

static uint8_t reg_read_locked(struct serial *s, unsigned int reg)
{
	uint8_t v = 0;

	switch (reg) {
	case UART_RBR:
		if (s->lcr & LCR_DLAB) {
			v = s->dll;
		} else if (s->rx_count) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % SERIAL_RX_SIZE;
			s->rx_count--;
		}
		break;
	case UART_IER:
		v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
		break;
	case UART_IIR:
		v = iir_compute(s);
		/* Reading IIR acknowledges a THRE interrupt (and only that one). */
		if ((v & 0x0f) == IIR_THRI)
			s->thri_pending = 0;
		break;
	case UART_LCR:
		v = s->lcr;
		break;
	case UART_MCR:
		v = s->mcr;
		break;
	case UART_LSR:
		v = LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0) | s->lsr_err;
		s->lsr_err = 0;		/* error bits clear on read */
		break;
	case UART_MSR:
		v = s->msr;
		s->msr &= (uint8_t)~MSR_DELTAS;
		break;
	case UART_SCR:
		v = s->scr;
		break;
	}
	return v;
}

static void reg_write_locked(struct serial *s, unsigned int reg, uint8_t v)
{
	switch (reg) {
	case UART_THR:
		if (s->lcr & LCR_DLAB)
			s->dll = v;
		else
			tx_locked(s, v);
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
		} else {
			uint8_t old = s->ier;

			s->ier = v & 0x0f;	/* bits 7:4 read as 0 (Linux probes them) */
			/* Enabling THRI with an empty transmitter raises THRE at once. */
			if (!(old & IER_THRI) && (s->ier & IER_THRI))
				s->thri_pending = 1;
		}
		break;
	case UART_FCR:
		if ((v ^ s->fcr) & FCR_ENABLE)
			rx_clear(s);	/* toggling the FIFO enable resets both FIFOs */
		if (v & FCR_CLEAR_RX)
			rx_clear(s);
		/* FCR_CLEAR_TX: nothing is ever queued for transmission. */
		s->fcr = v & 0xc1;	/* enable + trigger level; DMA mode and 64-byte bits unsupported */
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & 0x1f;
		msr_update(s);
		break;
	case UART_LSR:
		break;			/* factory test register; writes ignored */
	case UART_MSR:
		break;
	case UART_SCR:
		s->scr = v;
		break;
	}
}

static void serial_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct serial *s = opaque;
	uint8_t *d = data;

	pthread_mutex_lock(&s->lock);
	/* A wider access reads consecutive registers, as the byte lanes would. */
	for (uint32_t i = 0; i < len; i++)
		d[i] = off + i < SERIAL_NR_REGS ? reg_read_locked(s, (unsigned int)(off + i)) : 0xff;
	irq_update_locked(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct serial *s = opaque;
	const uint8_t *d = data;

	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < len; i++)
		if (off + i < SERIAL_NR_REGS)
			reg_write_locked(s, (unsigned int)(off + i), d[i]);
	irq_update_locked(s);
	pthread_mutex_unlock(&s->lock);
}

const struct bus_ops serial_ops = {
	.read = serial_read,
	.write = serial_write,
};

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	/* In loopback the receiver is disconnected from the line. */
	if (!(s->mcr & MCR_LOOP)) {
		while (n < len && rx_push_locked(s, buf[n]) == 0)
			n++;
	}
	if (n < len && !(s->mcr & MCR_LOOP))
		s->stats.rx_dropped += len - n - 1;	/* rx_push_locked counted the first */
	irq_update_locked(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

void serial_get_stats(struct serial *s, struct serial_stats *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->stats;
	pthread_mutex_unlock(&s->lock);
}

/* ---- migration state ---- */

enum {
	SER_T_IER = 1, SER_T_FCR, SER_T_LCR, SER_T_MCR, SER_T_SCR, SER_T_DLL, SER_T_DLM,
	SER_T_LSR_ERR, SER_T_MSR, SER_T_THRI_PENDING, SER_T_RX,
};

static const struct { uint16_t tag; size_t off; } ser_u8[] = {
	{ SER_T_IER, offsetof(struct serial_state, ier) },
	{ SER_T_FCR, offsetof(struct serial_state, fcr) },
	{ SER_T_LCR, offsetof(struct serial_state, lcr) },
	{ SER_T_MCR, offsetof(struct serial_state, mcr) },
	{ SER_T_SCR, offsetof(struct serial_state, scr) },
	{ SER_T_DLL, offsetof(struct serial_state, dll) },
	{ SER_T_DLM, offsetof(struct serial_state, dlm) },
	{ SER_T_LSR_ERR, offsetof(struct serial_state, lsr_err) },
	{ SER_T_MSR, offsetof(struct serial_state, msr) },
	{ SER_T_THRI_PENDING, offsetof(struct serial_state, thri_pending) },
};

int serial_state_save(struct serial *s, struct state_writer *w)
{
	struct serial_state *st = malloc(sizeof(*st));

	if (!st)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	st->ier = s->ier;
	st->fcr = s->fcr;
	st->lcr = s->lcr;
	st->mcr = s->mcr;
	st->scr = s->scr;
	st->dll = s->dll;
	st->dlm = s->dlm;
	st->lsr_err = s->lsr_err;
	st->msr = s->msr;
	st->thri_pending = (uint8_t)s->thri_pending;
	st->rx_count = (uint32_t)s->rx_count;
	for (size_t i = 0; i < s->rx_count; i++)
		st->rx[i] = s->rx[(s->rx_head + i) % SERIAL_RX_SIZE];
	pthread_mutex_unlock(&s->lock);

	for (size_t i = 0; i < sizeof(ser_u8) / sizeof(ser_u8[0]); i++)
		sw_u8(w, ser_u8[i].tag, *((const uint8_t *)st + ser_u8[i].off), STATE_F_REQUIRED);
	sw_bytes(w, SER_T_RX, st->rx, st->rx_count, 0);
	free(st);
	return 0;		/* writer errors are sticky: the caller checks sw_error() */
}

int serial_state_parse(struct state_reader *r, struct serial_state *st)
{
	struct state_field f;
	int ret;

	memset(st, 0, sizeof(*st));
	st->lcr = 0x03;			/* defaults for fields an older writer did not send */
	while ((ret = sr_next(r, &f)) > 0) {
		size_t i;

		for (i = 0; i < sizeof(ser_u8) / sizeof(ser_u8[0]); i++)
			if (f.tag == ser_u8[i].tag)
				break;
		if (i < sizeof(ser_u8) / sizeof(ser_u8[0])) {
			ret = sr_u8(&f, (uint8_t *)st + ser_u8[i].off);
		} else if (f.tag == SER_T_RX) {
			if (f.len > SERIAL_RX_SIZE)
				return -EBADMSG;
			memcpy(st->rx, f.data, f.len);
			st->rx_count = f.len;
			ret = 0;
		} else {
			ret = sr_skip_unknown(r, &f);
		}
		if (ret < 0)
			return ret;
	}
	if (ret < 0)
		return ret;
	/* Registers keep only the bits the device implements, whatever the stream says. */
	st->ier &= 0x0f;
	st->fcr &= 0xc1;
	st->mcr &= 0x1f;
	st->thri_pending = !!st->thri_pending;
	return 0;
}

void serial_state_apply(struct serial *s, const struct serial_state *st)
{
	int level;

	pthread_mutex_lock(&s->lock);
	s->ier = st->ier;
	s->fcr = st->fcr;
	s->lcr = st->lcr;
	s->mcr = st->mcr;
	s->scr = st->scr;
	s->dll = st->dll;
	s->dlm = st->dlm;
	s->lsr_err = st->lsr_err;
	s->msr = st->msr;
	s->thri_pending = st->thri_pending;
	memcpy(s->rx, st->rx, st->rx_count);
	s->rx_head = 0;
	s->rx_count = st->rx_count;
	/* Drive the line to what the registers say, whatever it was before. */
	level = !(iir_compute(s) & IIR_NO_INT);
	s->irq_level = level;
	if (s->irq.set)
		s->irq.set(s->irq.opaque, s->irq.gsi, level);
	pthread_mutex_unlock(&s->lock);
}

int serial_create(const struct serial_config *cfg, struct serial **out)
{
	struct serial *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	ret = -pthread_mutex_init(&s->lock, NULL);
	if (ret) {
		free(s);
		return ret;
	}
	snprintf(s->name, sizeof(s->name), "%s", cfg->name ? cfg->name : "uart");
	s->out_fd = cfg->out_fd;
	s->irq = cfg->irq;
	/* 8N1 at 9600 baud (divisor 12): what a BIOS leaves behind for the kernel. */
	s->lcr = 0x03;
	s->dll = 0x0c;
	s->msr = msr_lines(s);
	*out = s;
	return 0;
}

void serial_destroy(struct serial *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}
