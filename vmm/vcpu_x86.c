// SPDX-License-Identifier: MIT
/*
 * x86 vCPU and in-kernel VM device state for snapshots and live migration (state.h):
 *
 *   section "kvm-vm"  id "0": PIC master/slave and IOAPIC (KVM_GET_IRQCHIP), PIT
 *                             (KVM_GET_PIT2), kvmclock (KVM_GET_CLOCK)
 *   section "vcpu"    id "N": MP state, GPRs, system registers, XSAVE area, XCRs, LAPIC,
 *                             pending events, debug registers, MSRs
 *
 * The VM section is registered before the vCPUs so it loads first: the IOAPIC and PIC must be
 * in place before the LAPICs receive their state, as KVM expects.
 *
 * Encoding: KVM's uapi structs are fixed-layout, explicitly padded, little-endian x86-64 on
 * both ends; they travel as byte strings whose length must match exactly (a kernel with a
 * different struct size is refused, not misread). MSRs travel as (index, value) pairs so the
 * destination can name the one its KVM refuses.
 *
 * Threading: save/load run on the migration or main thread with every vCPU paused
 * (vm_pause()), so no KVM_RUN races these ioctls.
 */
#define LOG_TAG "vcpu-state"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/kvm.h"
#include "vmm/lib/log.h"
#include "vmm/state.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

enum {
	VCPU_T_MP_STATE = 1,
	VCPU_T_REGS,
	VCPU_T_SREGS,
	VCPU_T_XSAVE,
	VCPU_T_XCRS,
	VCPU_T_LAPIC,
	VCPU_T_EVENTS,
	VCPU_T_DEBUGREGS,
	VCPU_T_MSRS,			/* u64 pairs: index, value */
};

enum {
	VMST_T_PIC_MASTER = 1,
	VMST_T_PIC_SLAVE,
	VMST_T_IOAPIC,
	VMST_T_PIT,
	VMST_T_CLOCK,
};

#define VCPU_MAX_MSRS	512

/* Everything of one vCPU, parsed and checked before any of it reaches KVM. */
struct vcpu_state {
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_debugregs dregs;
	uint32_t nmsrs;
	struct kvm_msr_entry msrs[VCPU_MAX_MSRS];
	unsigned int have;		/* bit per VCPU_T_* */
};

struct msr_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[VCPU_MAX_MSRS];
};

/*
 * Read every MSR KVM listed that this vCPU can read. KVM_GET_MSRS stops at the first MSR it
 * cannot read (one the vCPU's CPUID does not have), returning how many it read: skip that
 * one and go on.
 */
static int msrs_read(struct vcpu *v, struct vcpu_state *s)
{
	const struct kvm_msr_list *list = v->vm->msrs;
	struct msr_buf *b = calloc(1, sizeof(*b));
	uint32_t i = 0, n = 0;
	int ret;

	if (!b)
		return -ENOMEM;
	while (i < list->nmsrs && n < VCPU_MAX_MSRS) {
		uint32_t j, batch = list->nmsrs - i;

		if (batch > VCPU_MAX_MSRS - n)
			batch = VCPU_MAX_MSRS - n;
		b->hdr.nmsrs = batch;
		for (j = 0; j < batch; j++)
			b->e[j] = (struct kvm_msr_entry){ .index = list->indices[i + j] };
		ret = kvm_ioctl(v->fd, KVM_GET_MSRS, b);
		if (ret < 0) {
			log_err("vcpu%u: KVM_GET_MSRS: %s", v->id, strerror(-ret));
			free(b);
			return ret;
		}
		memcpy(&s->msrs[n], b->e, (size_t)ret * sizeof(b->e[0]));
		n += (uint32_t)ret;
		i += (uint32_t)ret + ((uint32_t)ret < batch);	/* skip the unreadable one */
	}
	s->nmsrs = n;
	free(b);
	return 0;
}

static int vcpu_save(void *opaque, struct state_writer *w)
{
	struct vcpu *v = opaque;
	struct vcpu_state *s = calloc(1, sizeof(*s));
	uint64_t *pairs = NULL;
	const char *what;
	uint32_t i;
	int ret;

	if (!s)
		return -ENOMEM;
#define GET(req, field, name) do { what = name; ret = kvm_ioctl(v->fd, req, &s->field); \
		if (ret < 0) goto err; } while (0)
	GET(KVM_GET_MP_STATE, mp, "KVM_GET_MP_STATE");
	GET(KVM_GET_REGS, regs, "KVM_GET_REGS");
	GET(KVM_GET_SREGS, sregs, "KVM_GET_SREGS");
	GET(KVM_GET_XSAVE, xsave, "KVM_GET_XSAVE");
	GET(KVM_GET_XCRS, xcrs, "KVM_GET_XCRS");
	GET(KVM_GET_LAPIC, lapic, "KVM_GET_LAPIC");
	GET(KVM_GET_VCPU_EVENTS, events, "KVM_GET_VCPU_EVENTS");
	GET(KVM_GET_DEBUGREGS, dregs, "KVM_GET_DEBUGREGS");
#undef GET
	ret = msrs_read(v, s);
	if (ret < 0)
		goto out;
	pairs = calloc(2 * (size_t)s->nmsrs + 1, sizeof(*pairs));
	if (!pairs) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < s->nmsrs; i++) {
		pairs[2 * i] = s->msrs[i].index;
		pairs[2 * i + 1] = s->msrs[i].data;
	}
	sw_u32(w, VCPU_T_MP_STATE, s->mp.mp_state, STATE_F_REQUIRED);
	sw_bytes(w, VCPU_T_REGS, &s->regs, sizeof(s->regs), STATE_F_REQUIRED);
	sw_bytes(w, VCPU_T_SREGS, &s->sregs, sizeof(s->sregs), STATE_F_REQUIRED);
	sw_bytes(w, VCPU_T_XSAVE, &s->xsave, sizeof(s->xsave), STATE_F_REQUIRED);
	sw_bytes(w, VCPU_T_XCRS, &s->xcrs, sizeof(s->xcrs), STATE_F_REQUIRED);
	sw_bytes(w, VCPU_T_LAPIC, &s->lapic, sizeof(s->lapic), STATE_F_REQUIRED);
	sw_bytes(w, VCPU_T_EVENTS, &s->events, sizeof(s->events), STATE_F_REQUIRED);
	sw_bytes(w, VCPU_T_DEBUGREGS, &s->dregs, sizeof(s->dregs), 0);
	sw_u64_array(w, VCPU_T_MSRS, pairs, 2 * (size_t)s->nmsrs, STATE_F_REQUIRED);
	ret = sw_error(w);
	goto out;
err:
	log_err("vcpu%u: %s: %s", v->id, what, strerror(-ret));
out:
	free(pairs);
	free(s);
	return ret;
}

/* A byte-string field that must be exactly one uapi struct. */
static int field_struct(const struct state_field *f, void *dst, size_t len, const char *name)
{
	int ret = sr_bytes(f, dst, len);

	if (ret < 0)
		log_err("vCPU state: %s is not %zu bytes (a different KVM ABI?)", name, len);
	return ret;
}

static int vcpu_parse(struct state_reader *r, struct vcpu_state *s, uint64_t *pairs)
{
	struct state_field f;
	size_t n, i;
	int ret;

	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case VCPU_T_MP_STATE: ret = sr_u32(&f, &s->mp.mp_state); break;
		case VCPU_T_REGS: ret = field_struct(&f, &s->regs, sizeof(s->regs), "regs"); break;
		case VCPU_T_SREGS: ret = field_struct(&f, &s->sregs, sizeof(s->sregs), "sregs"); break;
		case VCPU_T_XSAVE: ret = field_struct(&f, &s->xsave, sizeof(s->xsave), "xsave"); break;
		case VCPU_T_XCRS: ret = field_struct(&f, &s->xcrs, sizeof(s->xcrs), "xcrs"); break;
		case VCPU_T_LAPIC: ret = field_struct(&f, &s->lapic, sizeof(s->lapic), "lapic"); break;
		case VCPU_T_EVENTS: ret = field_struct(&f, &s->events, sizeof(s->events), "events"); break;
		case VCPU_T_DEBUGREGS: ret = field_struct(&f, &s->dregs, sizeof(s->dregs), "debugregs"); break;
		case VCPU_T_MSRS:
			ret = sr_u64_array(&f, pairs, 2 * VCPU_MAX_MSRS, &n);
			if (ret < 0 || n % 2) {
				log_err("vCPU state: bad MSR list");
				return -EBADMSG;
			}
			for (i = 0; i < n / 2; i++) {
				if (pairs[2 * i] > UINT32_MAX)
					return -EBADMSG;
				s->msrs[i] = (struct kvm_msr_entry){ .index = (uint32_t)pairs[2 * i],
								     .data = pairs[2 * i + 1] };
			}
			s->nmsrs = (uint32_t)(n / 2);
			break;
		default:
			ret = sr_skip_unknown(r, &f);
			break;
		}
		if (ret < 0)
			return ret;
		if (f.tag < 32)
			s->have |= 1u << f.tag;
	}
	if (ret < 0)
		return ret;
	/* mp_state comes from the guest's side of the world: only the values KVM defines. */
	if (s->mp.mp_state > KVM_MP_STATE_AP_RESET_HOLD)
		return -EBADMSG;
	return 0;
}

static int vcpu_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct vcpu *v = opaque;
	struct vcpu_state *s = calloc(1, sizeof(*s));
	uint64_t *pairs = calloc(2 * VCPU_MAX_MSRS, sizeof(*pairs));
	struct msr_buf *b = NULL;
	const char *what = "";
	int ret;

	if (!s || !pairs) {
		ret = -ENOMEM;
		goto out;
	}
	ret = vcpu_parse(r, s, pairs);
	if (ret < 0)
		goto out;
	/* The order KVM needs: sregs (APIC base, modes) before the LAPIC, events last. */
#define SET(req, field, name) do { what = name; ret = kvm_ioctl(v->fd, req, &s->field); \
		if (ret < 0) goto err; } while (0)
	SET(KVM_SET_SREGS, sregs, "KVM_SET_SREGS");
	SET(KVM_SET_REGS, regs, "KVM_SET_REGS");
	SET(KVM_SET_XSAVE, xsave, "KVM_SET_XSAVE");
	SET(KVM_SET_XCRS, xcrs, "KVM_SET_XCRS");
	b = calloc(1, sizeof(*b));
	if (!b) {
		ret = -ENOMEM;
		goto out;
	}
	b->hdr.nmsrs = s->nmsrs;
	memcpy(b->e, s->msrs, s->nmsrs * sizeof(b->e[0]));
	what = "KVM_SET_MSRS";
	ret = kvm_ioctl(v->fd, KVM_SET_MSRS, b);
	if (ret >= 0 && (uint32_t)ret != s->nmsrs) {
		log_err("vcpu%u: this KVM refuses MSR 0x%x from the saved state", v->id, b->e[ret].index);
		ret = -EINVAL;
		goto out;
	}
	if (ret < 0)
		goto err;
	SET(KVM_SET_MP_STATE, mp, "KVM_SET_MP_STATE");
	SET(KVM_SET_LAPIC, lapic, "KVM_SET_LAPIC");
	if (s->have & (1u << VCPU_T_DEBUGREGS))
		SET(KVM_SET_DEBUGREGS, dregs, "KVM_SET_DEBUGREGS");
	SET(KVM_SET_VCPU_EVENTS, events, "KVM_SET_VCPU_EVENTS");
#undef SET
	goto out;
err:
	log_err("vcpu%u: %s: %s", v->id, what, strerror(-ret));
out:
	free(pairs);
	free(b);
	free(s);
	return ret;
}

static const struct state_ops vcpu_state_ops = {
	.name = "vcpu", .version = 1, .min_version = 1,
	.save = vcpu_save, .load = vcpu_load,
};

/* ---- the in-kernel devices of the VM ---- */

static int vmst_save(void *opaque, struct state_writer *w)
{
	struct vm *vm = opaque;
	struct kvm_irqchip chip[3];
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	unsigned int i;
	int ret;

	for (i = 0; i < 3; i++) {
		memset(&chip[i], 0, sizeof(chip[i]));
		chip[i].chip_id = i;		/* KVM_IRQCHIP_PIC_MASTER, _SLAVE, _IOAPIC */
		ret = kvm_ioctl(vm->kvm.vm_fd, KVM_GET_IRQCHIP, &chip[i]);
		if (ret < 0) {
			log_err("KVM_GET_IRQCHIP %u: %s", i, strerror(-ret));
			return ret;
		}
	}
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_GET_PIT2, &pit);
	if (ret < 0) {
		log_err("KVM_GET_PIT2: %s", strerror(-ret));
		return ret;
	}
	memset(&clock, 0, sizeof(clock));
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_GET_CLOCK, &clock);
	if (ret < 0) {
		log_err("KVM_GET_CLOCK: %s", strerror(-ret));
		return ret;
	}
	sw_bytes(w, VMST_T_PIC_MASTER, &chip[0], sizeof(chip[0]), STATE_F_REQUIRED);
	sw_bytes(w, VMST_T_PIC_SLAVE, &chip[1], sizeof(chip[1]), STATE_F_REQUIRED);
	sw_bytes(w, VMST_T_IOAPIC, &chip[2], sizeof(chip[2]), STATE_F_REQUIRED);
	sw_bytes(w, VMST_T_PIT, &pit, sizeof(pit), STATE_F_REQUIRED);
	sw_u64(w, VMST_T_CLOCK, clock.clock, STATE_F_REQUIRED);
	return sw_error(w);
}

static int vmst_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct vm *vm = opaque;
	struct kvm_irqchip chip[3];
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	struct state_field f;
	unsigned int have = 0, i;
	int ret;

	memset(&clock, 0, sizeof(clock));
	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case VMST_T_PIC_MASTER:
		case VMST_T_PIC_SLAVE:
		case VMST_T_IOAPIC:
			ret = field_struct(&f, &chip[f.tag - 1], sizeof(chip[0]), "irqchip");
			if (ret == 0 && chip[f.tag - 1].chip_id != f.tag - 1u)
				ret = -EBADMSG;
			break;
		case VMST_T_PIT: ret = field_struct(&f, &pit, sizeof(pit), "pit"); break;
		case VMST_T_CLOCK: ret = sr_u64(&f, (uint64_t *)&clock.clock); break;
		default: ret = sr_skip_unknown(r, &f); break;
		}
		if (ret < 0)
			return ret;
		if (f.tag < 32)
			have |= 1u << f.tag;
	}
	if (ret < 0)
		return ret;
	if ((have & 0x3e) != 0x3e) {
		log_err("VM state: in-kernel device state incomplete");
		return -EBADMSG;
	}
	for (i = 0; i < 3; i++) {
		ret = kvm_ioctl(vm->kvm.vm_fd, KVM_SET_IRQCHIP, &chip[i]);
		if (ret < 0) {
			log_err("KVM_SET_IRQCHIP %u: %s", i, strerror(-ret));
			return ret;
		}
	}
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_SET_PIT2, &pit);
	if (ret < 0) {
		log_err("KVM_SET_PIT2: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_SET_CLOCK, &clock);
	if (ret < 0)
		log_err("KVM_SET_CLOCK: %s", strerror(-ret));
	return ret;
}

static const struct state_ops vmst_state_ops = {
	.name = "kvm-vm", .version = 1, .min_version = 1,
	.save = vmst_save, .load = vmst_load,
};

int vcpu_state_register(struct vm *vm, struct state_registry *reg)
{
	char id[16];
	unsigned int i;
	int ret;

	ret = state_register(reg, "0", &vmst_state_ops, vm);
	for (i = 0; ret == 0 && i < vm->nr_vcpus; i++) {
		snprintf(id, sizeof(id), "%u", i);
		ret = state_register(reg, id, &vcpu_state_ops, &vm->vcpus[i]);
	}
	return ret;
}
