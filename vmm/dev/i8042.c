// SPDX-License-Identifier: MIT
/*
 * i8042 (see i8042.h). Command set per the IBM PC/AT technical reference and the 8042
 * descriptions in Linux's drivers/input/serio/i8042.h; only what probing and the reset path
 * use is modelled. Replies go into a small output queue read through port 0x60, with
 * status bit 0 (OBF) telling the guest there is something to read.
 */
#define LOG_TAG "i8042"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/dev/i8042.h"
#include "vmm/lib/log.h"
#include "vmm/state.h"

#define STS_OBF		0x01
#define STS_SYS		0x04	/* system flag: POST passed */
#define STS_CMD		0x08	/* last write was to the command port */
#define STS_UNLOCKED	0x10	/* keyboard not inhibited */

#define CMD_READ_CTR	0x20
#define CMD_WRITE_CTR	0x60
#define CMD_AUX_DISABLE	0xa7
#define CMD_AUX_ENABLE	0xa8
#define CMD_AUX_TEST	0xa9
#define CMD_SELF_TEST	0xaa
#define CMD_KBD_TEST	0xab
#define CMD_KBD_DISABLE	0xad
#define CMD_KBD_ENABLE	0xae
#define CMD_READ_OUTP	0xd0
#define CMD_WRITE_OUTP	0xd1
#define CMD_WRITE_KBD_OB 0xd2
#define CMD_WRITE_AUX_OB 0xd3
#define CMD_WRITE_AUX	0xd4

#define CTR_SYS		0x04

#define OUTQ_SIZE	16

struct i8042 {
	pthread_mutex_t lock;	/* protects everything below; leaf except @reset */
	void (*reset)(void *opaque);
	void *reset_opaque;
	uint8_t ctr;		/* controller command byte */
	uint8_t status;		/* STS_SYS | STS_CMD bits; OBF is derived from the queue */
	uint8_t outp;		/* output port: bit 0 = reset line (active low), bit 1 = A20 */
	uint8_t pending;	/* controller command waiting for its data byte, or 0 */
	uint8_t kbd_pending;	/* keyboard command waiting for its argument, or 0 */
	uint8_t outq[OUTQ_SIZE];
	unsigned int out_head, out_count;
};

static void out_push(struct i8042 *k, uint8_t v)
{
	if (k->out_count == OUTQ_SIZE)
		return;		/* the guest is not reading; drop like a full buffer would */
	k->outq[(k->out_head + k->out_count) % OUTQ_SIZE] = v;
	k->out_count++;
}

static void do_reset(struct i8042 *k)
{
	log_ratelimited(LOG_INFO, "guest pulsed the i8042 reset line");
	if (k->reset)
		k->reset(k->reset_opaque);
}

/* Output port write: bit 0 low asserts the CPU reset line. */
static void outp_write(struct i8042 *k, uint8_t v)
{
	k->outp = v;
	if (!(v & 0x01))
		do_reset(k);
}

/* A byte sent to the keyboard (port 0x60 with no controller command pending). */
static void kbd_write(struct i8042 *k, uint8_t v)
{
	if (k->kbd_pending) {		/* argument of 0xED (LEDs) / 0xF3 (typematic) */
		k->kbd_pending = 0;
		out_push(k, 0xfa);
		return;
	}
	switch (v) {
	case 0xed:
	case 0xf3:
		k->kbd_pending = v;
		out_push(k, 0xfa);
		break;
	case 0xee:			/* echo */
		out_push(k, 0xee);
		break;
	case 0xf2:			/* identify: MF2 keyboard */
		out_push(k, 0xfa);
		out_push(k, 0xab);
		out_push(k, 0x83);
		break;
	case 0xff:			/* reset: ACK, then BAT passed */
		out_push(k, 0xfa);
		out_push(k, 0xaa);
		break;
	default:			/* enable/disable/set defaults/...: ACK */
		out_push(k, 0xfa);
		break;
	}
}

static void cmd_write_locked(struct i8042 *k, uint8_t cmd)
{
	k->status |= STS_CMD;
	k->pending = 0;
	switch (cmd) {
	case CMD_READ_CTR:
		out_push(k, k->ctr);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTP:
	case CMD_WRITE_KBD_OB:
	case CMD_WRITE_AUX_OB:
	case CMD_WRITE_AUX:
		k->pending = cmd;
		break;
	case CMD_SELF_TEST:
		k->status |= STS_SYS;
		out_push(k, 0x55);
		break;
	case CMD_KBD_TEST:
		out_push(k, 0x00);
		break;
	case CMD_AUX_TEST:
		out_push(k, 0x00);
		break;
	case CMD_READ_OUTP:
		out_push(k, k->outp);
		break;
	case CMD_KBD_DISABLE:
		k->ctr |= 0x10;
		break;
	case CMD_KBD_ENABLE:
		k->ctr &= (uint8_t)~0x10;
		break;
	case CMD_AUX_DISABLE:
		k->ctr |= 0x20;
		break;
	case CMD_AUX_ENABLE:
		k->ctr &= (uint8_t)~0x20;
		break;
	default:
		/* 0xF0-0xFF pulse output port bits 0-3 low for those bits that are 0 in the
		 * command; bit 0 is the reset line (0xFE is the classic reset). */
		if (cmd >= 0xf0) {
			if (!(cmd & 0x01))
				do_reset(k);
			break;
		}
		log_ratelimited(LOG_DBG, "unhandled controller command 0x%02x", cmd);
		break;
	}
}

static void data_write_locked(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending;

	k->status &= (uint8_t)~STS_CMD;
	k->pending = 0;
	switch (cmd) {
	case CMD_WRITE_CTR:
		k->ctr = v;
		k->status = (uint8_t)((k->status & ~STS_SYS) | (v & CTR_SYS));
		break;
	case CMD_WRITE_OUTP:
		outp_write(k, v);
		break;
	case CMD_WRITE_KBD_OB:
	case CMD_WRITE_AUX_OB:
		out_push(k, v);
		break;
	case CMD_WRITE_AUX:
		break;			/* no mouse attached: the byte goes nowhere */
	default:
		kbd_write(k, v);
		break;
	}
}

static void data_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct i8042 *k = opaque;
	uint8_t v = 0;

	if (!len)
		return;
	pthread_mutex_lock(&k->lock);
	if (k->out_count) {
		v = k->outq[k->out_head];
		k->out_head = (k->out_head + 1) % OUTQ_SIZE;
		k->out_count--;
	}
	pthread_mutex_unlock(&k->lock);
	memset(data, 0, len);
	*(uint8_t *)data = v;
}

static void data_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct i8042 *k = opaque;

	if (!len)
		return;
	pthread_mutex_lock(&k->lock);
	data_write_locked(k, *(const uint8_t *)data);
	pthread_mutex_unlock(&k->lock);
}

static void cmd_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct i8042 *k = opaque;
	uint8_t v;

	if (!len)
		return;
	pthread_mutex_lock(&k->lock);
	/* The input buffer is never full: commands are processed at once. */
	v = (uint8_t)(k->status | STS_UNLOCKED | (k->out_count ? STS_OBF : 0));
	pthread_mutex_unlock(&k->lock);
	memset(data, 0, len);
	*(uint8_t *)data = v;
}

static void cmd_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct i8042 *k = opaque;

	if (!len)
		return;
	pthread_mutex_lock(&k->lock);
	cmd_write_locked(k, *(const uint8_t *)data);
	pthread_mutex_unlock(&k->lock);
}

const struct bus_ops i8042_data_ops = {
	.read = data_read,
	.write = data_write,
};

const struct bus_ops i8042_cmd_ops = {
	.read = cmd_read,
	.write = cmd_write,
};

/* ---- migration state ---- */

enum { KBC_T_CTR = 1, KBC_T_STATUS, KBC_T_OUTP, KBC_T_PENDING, KBC_T_KBD_PENDING, KBC_T_OUTQ };

_Static_assert(OUTQ_SIZE == sizeof(((struct i8042_state *)0)->outq), "i8042 queue size");

int i8042_state_save(struct i8042 *k, struct state_writer *w)
{
	struct i8042_state st;

	pthread_mutex_lock(&k->lock);
	st = (struct i8042_state){ k->ctr, k->status, k->outp, k->pending, k->kbd_pending,
				   (uint8_t)k->out_count, { 0 } };
	for (unsigned int i = 0; i < k->out_count; i++)
		st.outq[i] = k->outq[(k->out_head + i) % OUTQ_SIZE];
	pthread_mutex_unlock(&k->lock);
	sw_u8(w, KBC_T_CTR, st.ctr, STATE_F_REQUIRED);
	sw_u8(w, KBC_T_STATUS, st.status, STATE_F_REQUIRED);
	sw_u8(w, KBC_T_OUTP, st.outp, 0);
	sw_u8(w, KBC_T_PENDING, st.pending, 0);
	sw_u8(w, KBC_T_KBD_PENDING, st.kbd_pending, 0);
	sw_bytes(w, KBC_T_OUTQ, st.outq, st.outq_len, 0);
	return 0;		/* writer errors are sticky: the caller checks sw_error() */
}

int i8042_state_parse(struct state_reader *r, struct i8042_state *st)
{
	struct state_field f;
	int ret;

	memset(st, 0, sizeof(*st));
	st->outp = 0x03;
	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case KBC_T_CTR:		ret = sr_u8(&f, &st->ctr); break;
		case KBC_T_STATUS:	ret = sr_u8(&f, &st->status); break;
		case KBC_T_OUTP:	ret = sr_u8(&f, &st->outp); break;
		case KBC_T_PENDING:	ret = sr_u8(&f, &st->pending); break;
		case KBC_T_KBD_PENDING:	ret = sr_u8(&f, &st->kbd_pending); break;
		case KBC_T_OUTQ:
			if (f.len > OUTQ_SIZE)
				return -EBADMSG;
			memcpy(st->outq, f.data, f.len);
			st->outq_len = (uint8_t)f.len;
			ret = 0;
			break;
		default:
			ret = sr_skip_unknown(r, &f);
			break;
		}
		if (ret < 0)
			return ret;
	}
	if (ret < 0)
		return ret;
	st->status &= STS_SYS | STS_CMD;
	return 0;
}

void i8042_state_apply(struct i8042 *k, const struct i8042_state *st)
{
	pthread_mutex_lock(&k->lock);
	k->ctr = st->ctr;
	k->status = st->status;
	k->outp = st->outp;
	k->pending = st->pending;
	k->kbd_pending = st->kbd_pending;
	memcpy(k->outq, st->outq, st->outq_len);
	k->out_head = 0;
	k->out_count = st->outq_len;
	pthread_mutex_unlock(&k->lock);
}

int i8042_create(const struct i8042_config *cfg, struct i8042 **out)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	int ret;

	if (!k)
		return -ENOMEM;
	ret = -pthread_mutex_init(&k->lock, NULL);
	if (ret) {
		free(k);
		return ret;
	}
	k->reset = cfg ? cfg->reset : NULL;
	k->reset_opaque = cfg ? cfg->opaque : NULL;
	/* As a BIOS leaves it: translation on, SYS set, keyboard/aux IRQs off (none wired). */
	k->ctr = 0x44;
	k->status = STS_SYS;
	k->outp = 0x03;		/* reset line high, A20 enabled */
	*out = k;
	return 0;
}

void i8042_destroy(struct i8042 *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k);
}
