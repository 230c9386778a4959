// SPDX-License-Identifier: MIT
/*
 * VM-wide KVM state as the "kvm-vm" section (vmm/vm_state.h): the in-kernel PIC pair and
 * IOAPIC (KVM_GET_IRQCHIP 0, 1, 2), the PIT (KVM_GET_PIT2) and the KVM clock
 * (KVM_GET_CLOCK), plus vm_state_register_all(), which puts every KVM and platform section
 * into a registry in load order.
 *
 * Why this section first: KVM_SET_LAPIC on a vCPU and the platform's post_load (which
 * re-drives the COM1/SCI lines) both act on the irqchip, so it must already hold the
 * source's routing and masks. The clock goes in before the vCPUs' kvmclock MSRs point the
 * guest at it.
 *
 * The PIT's count_load_time is a host timestamp: it is saved for completeness, but KVM
 * restarts each counter from its saved count when it is set (kvm_pit_load_count), which is
 * what makes the section host-independent.
 */
#define LOG_TAG "vm-state"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmm/kvm.h"
#include "vmm/lib/log.h"
#include "vmm/platform.h"
#include "vmm/state.h"
#include "vmm/vm.h"
#include "vmm/vm_state.h"

enum {
	VMS_T_PIC_MASTER	= 1,	/* bytes[16]: kvm_pic_state, field order */
	VMS_T_PIC_SLAVE		= 2,
	VMS_T_IOAPIC		= 3,	/* u64[4 + 24]: base, ioregsel, id, irr, redirtbl */
	VMS_T_PIT		= 4,	/* u64[3 * PIT_CH_WORDS + 1] */
	VMS_T_CLOCK		= 5,	/* u64[2]: clock ns, flags */
};

#define PIC_BYTES	16
#define IOAPIC_WORDS	(4 + KVM_IOAPIC_NUM_PINS)
#define PIT_CH_WORDS	13
#define PIT_WORDS	(3 * PIT_CH_WORDS + 1)

static void pack_pic(uint8_t *b, const struct kvm_pic_state *p)
{
	const uint8_t v[PIC_BYTES] = {
		p->last_irr, p->irr, p->imr, p->isr, p->priority_add, p->irq_base,
		p->read_reg_select, p->poll, p->special_mask, p->init_state, p->auto_eoi,
		p->rotate_on_auto_eoi, p->special_fully_nested_mode, p->init4, p->elcr,
		p->elcr_mask };

	memcpy(b, v, sizeof(v));
}

static void unpack_pic(const uint8_t *b, struct kvm_pic_state *p)
{
	unsigned int k = 0;

	memset(p, 0, sizeof(*p));
	p->last_irr = b[k++]; p->irr = b[k++]; p->imr = b[k++]; p->isr = b[k++];
	p->priority_add = b[k++]; p->irq_base = b[k++]; p->read_reg_select = b[k++];
	p->poll = b[k++]; p->special_mask = b[k++]; p->init_state = b[k++];
	p->auto_eoi = b[k++]; p->rotate_on_auto_eoi = b[k++];
	p->special_fully_nested_mode = b[k++]; p->init4 = b[k++]; p->elcr = b[k++];
	p->elcr_mask = b[k++];
}

static void pack_pit(uint64_t *w, const struct kvm_pit_state2 *p)
{
	unsigned int i, k = 0;

	for (i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &p->channels[i];

		w[k++] = c->count; w[k++] = c->latched_count; w[k++] = c->count_latched;
		w[k++] = c->status_latched; w[k++] = c->status; w[k++] = c->read_state;
		w[k++] = c->write_state; w[k++] = c->write_latch; w[k++] = c->rw_mode;
		w[k++] = c->mode; w[k++] = c->bcd; w[k++] = c->gate;
		w[k++] = (uint64_t)c->count_load_time;
	}
	w[k] = p->flags;
}

static void unpack_pit(const uint64_t *w, struct kvm_pit_state2 *p)
{
	unsigned int i, k = 0;

	memset(p, 0, sizeof(*p));
	for (i = 0; i < 3; i++) {
		struct kvm_pit_channel_state *c = &p->channels[i];

		c->count = (uint32_t)w[k++]; c->latched_count = (uint16_t)w[k++];
		c->count_latched = (uint8_t)w[k++]; c->status_latched = (uint8_t)w[k++];
		c->status = (uint8_t)w[k++]; c->read_state = (uint8_t)w[k++];
		c->write_state = (uint8_t)w[k++]; c->write_latch = (uint8_t)w[k++];
		c->rw_mode = (uint8_t)w[k++]; c->mode = (uint8_t)w[k++];
		c->bcd = (uint8_t)w[k++]; c->gate = (uint8_t)w[k++];
		c->count_load_time = (int64_t)w[k++];
	}
	p->flags = (uint32_t)w[k];
}

static int get_chip(struct vm *vm, uint32_t id, struct kvm_irqchip *c)
{
	int ret;

	memset(c, 0, sizeof(*c));
	c->chip_id = id;
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_GET_IRQCHIP, c);
	if (ret < 0)
		log_err("KVM_GET_IRQCHIP %u: %s", id, strerror(-ret));
	return ret;
}

static int vms_save(void *opaque, struct state_writer *w)
{
	struct vm *vm = opaque;
	uint64_t words[PIT_WORDS > IOAPIC_WORDS ? PIT_WORDS : IOAPIC_WORDS];
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clk;
	struct kvm_irqchip chip;
	uint8_t pic[PIC_BYTES];
	unsigned int i;
	int ret;

	ret = get_chip(vm, KVM_IRQCHIP_PIC_MASTER, &chip);
	if (ret < 0)
		return ret;
	pack_pic(pic, &chip.chip.pic);
	sw_bytes(w, VMS_T_PIC_MASTER, pic, sizeof(pic), STATE_F_REQUIRED);
	ret = get_chip(vm, KVM_IRQCHIP_PIC_SLAVE, &chip);
	if (ret < 0)
		return ret;
	pack_pic(pic, &chip.chip.pic);
	sw_bytes(w, VMS_T_PIC_SLAVE, pic, sizeof(pic), STATE_F_REQUIRED);
	ret = get_chip(vm, KVM_IRQCHIP_IOAPIC, &chip);
	if (ret < 0)
		return ret;
	words[0] = chip.chip.ioapic.base_address;
	words[1] = chip.chip.ioapic.ioregsel;
	words[2] = chip.chip.ioapic.id;
	words[3] = chip.chip.ioapic.irr;
	for (i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		words[4 + i] = chip.chip.ioapic.redirtbl[i].bits;
	sw_u64_array(w, VMS_T_IOAPIC, words, IOAPIC_WORDS, STATE_F_REQUIRED);

	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_GET_PIT2, &pit);
	if (ret < 0) {
		log_err("KVM_GET_PIT2: %s", strerror(-ret));
		return ret;
	}
	pack_pit(words, &pit);
	sw_u64_array(w, VMS_T_PIT, words, PIT_WORDS, STATE_F_REQUIRED);

	memset(&clk, 0, sizeof(clk));
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_GET_CLOCK, &clk);
	if (ret < 0) {
		log_err("KVM_GET_CLOCK: %s", strerror(-ret));
		return ret;
	}
	words[0] = clk.clock;
	words[1] = clk.flags;
	sw_u64_array(w, VMS_T_CLOCK, words, 2, STATE_F_REQUIRED);
	return sw_error(w);
}

struct vms_image {
	uint8_t pic[2][PIC_BYTES];
	uint64_t ioapic[IOAPIC_WORDS], pit[PIT_WORDS], clock[2];
	unsigned int have;		/* bit per tag */
};

static int words_exact(const struct state_field *f, uint64_t *dst, size_t want)
{
	size_t n;
	int ret = sr_u64_array(f, dst, want, &n);

	return ret < 0 ? ret : n == want ? 0 : -EBADMSG;
}

static int vms_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct vm *vm = opaque;
	struct vms_image im;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clk;
	struct kvm_irqchip chip;
	struct state_field f;
	unsigned int i;
	int ret;

	memset(&im, 0, sizeof(im));
	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case VMS_T_PIC_MASTER:
		case VMS_T_PIC_SLAVE:
			ret = sr_bytes(&f, im.pic[f.tag - VMS_T_PIC_MASTER], PIC_BYTES);
			break;
		case VMS_T_IOAPIC:
			ret = words_exact(&f, im.ioapic, IOAPIC_WORDS);
			break;
		case VMS_T_PIT:
			ret = words_exact(&f, im.pit, PIT_WORDS);
			break;
		case VMS_T_CLOCK:
			ret = words_exact(&f, im.clock, 2);
			break;
		default:
			ret = sr_skip_unknown(r, &f);
			break;
		}
		if (ret < 0) {
			log_err("malformed field %u in the kvm-vm section", f.tag);
			return ret;
		}
		if (f.tag >= VMS_T_PIC_MASTER && f.tag <= VMS_T_CLOCK)
			im.have |= 1u << f.tag;
	}
	if (ret < 0)
		return ret;
	if (im.have != 0x3e) {
		log_err("kvm-vm section lacks a required field (have 0x%x)", im.have);
		return -EBADMSG;
	}
	/* IOAPIC base is architectural; a different one means a hostile or foreign stream. */
	if (im.ioapic[0] != 0xfec00000ull) {
		log_err("saved IOAPIC base 0x%llx is not 0xfec00000", (unsigned long long)im.ioapic[0]);
		return -EBADMSG;
	}

	for (i = 0; i < 2; i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = i ? KVM_IRQCHIP_PIC_SLAVE : KVM_IRQCHIP_PIC_MASTER;
		unpack_pic(im.pic[i], &chip.chip.pic);
		ret = kvm_ioctl(vm->kvm.vm_fd, KVM_SET_IRQCHIP, &chip);
		if (ret < 0)
			goto err_chip;
	}
	memset(&chip, 0, sizeof(chip));
	chip.chip_id = KVM_IRQCHIP_IOAPIC;
	chip.chip.ioapic.base_address = im.ioapic[0];
	chip.chip.ioapic.ioregsel = (uint32_t)im.ioapic[1];
	chip.chip.ioapic.id = (uint32_t)im.ioapic[2];
	chip.chip.ioapic.irr = (uint32_t)im.ioapic[3];
	for (i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		chip.chip.ioapic.redirtbl[i].bits = im.ioapic[4 + i];
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_SET_IRQCHIP, &chip);
	if (ret < 0)
		goto err_chip;

	unpack_pit(im.pit, &pit);
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_SET_PIT2, &pit);
	if (ret < 0) {
		log_err("KVM_SET_PIT2: %s", strerror(-ret));
		return ret;
	}
	/*
	 * The guest's clock continues from the value it had when the source paused: the
	 * downtime is not seen as elapsed time by kvmclock (QEMU does the same); the guest's
	 * NTP or RTC re-read absorbs it.
	 */
	memset(&clk, 0, sizeof(clk));
	clk.clock = im.clock[0];
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_SET_CLOCK, &clk);
	if (ret < 0) {
		log_err("KVM_SET_CLOCK: %s", strerror(-ret));
		return ret;
	}
	return 0;

err_chip:
	log_err("KVM_SET_IRQCHIP %u: %s", chip.chip_id, strerror(-ret));
	return ret;
}

const struct state_ops vm_kvm_state_ops = {
	.name = "kvm-vm",
	.version = 1,
	.min_version = 1,
	.save = vms_save,
	.load = vms_load,
};

int vm_state_register_all(struct vm *vm, struct state_registry *reg)
{
	char id[16];
	unsigned int i;
	int ret;

	ret = state_register(reg, "", &vm_kvm_state_ops, vm);
	if (ret < 0)
		goto err;
	for (i = 0; i < vm->nr_vcpus; i++) {
		snprintf(id, sizeof(id), "%u", i);
		ret = state_register(reg, id, &vcpu_state_ops, &vm->vcpus[i]);
		if (ret < 0)
			goto err;
	}
	if (vm->platform) {
		ret = platform_state_register(vm->platform, reg);
		if (ret < 0)
			goto err;
	}
	return 0;
err:
	log_err("registering VM state sections: %s", strerror(-ret));
	return ret;
}
