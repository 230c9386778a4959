// SPDX-License-Identifier: MIT
/*
 * vCPU state as a "vcpu" section (vmm/vm_state.h, docs/state-format.md "KVM sections"):
 * everything KVM keeps per vCPU that a guest can observe, read with the KVM_GET_* ioctls
 * while the vCPU is paused, and written back with KVM_SET_* in the order QEMU's
 * kvm_arch_put_registers uses (and for the same reasons): GPRs, XSAVE, XCRs, special
 * registers (APIC base, EFER: they change how later MSR/LAPIC writes are interpreted),
 * MSRs, MP state, LAPIC, then pending events (an event injected before the LAPIC is restored
 * would be lost) and debug registers.
 *
 * Every KVM struct is converted field by field into u64 arrays (little-endian through the
 * writer), never memcpy'd, so padding and the host's struct layout stay off the wire. XSAVE
 * and the LAPIC register page are byte images whose layout the architecture defines.
 *
 * load() parses and checks every field before the first KVM_SET_*, so a malformed section
 * changes nothing. A KVM_SET_* that fails after that aborts the load: the destination then
 * exits without running the guest (state.h, two-phase load).
 */
#define LOG_TAG "vcpu-state"
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/kvm.h"
#include "vmm/lib/log.h"
#include "vmm/state.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/vm_state.h"

#define MSR_TSC_DEADLINE	0x6e0	/* IA32_TSC_DEADLINE */

enum {
	VCPU_T_REGS		= 1,	/* u64[18]: rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags */
	VCPU_T_SREGS		= 2,	/* u64[SREGS_WORDS], see pack_sregs */
	VCPU_T_IRQ_BITMAP	= 3,	/* u64[4]: kvm_sregs.interrupt_bitmap (old KVM without sregs2) */
	VCPU_T_PDPTRS		= 4,	/* u64[5]: sregs2 flags, pdptrs[4] */
	VCPU_T_XSAVE		= 5,	/* bytes: the XSAVE area (KVM_GET_XSAVE[2]) */
	VCPU_T_FPU		= 6,	/* u64[FPU_WORDS]: kvm_fpu, when KVM has no XSAVE */
	VCPU_T_XCRS		= 7,	/* u64[2n]: (xcr index, value) */
	VCPU_T_MSRS		= 8,	/* u64[2n]: (msr index, value) */
	VCPU_T_LAPIC		= 9,	/* bytes[1024]: the LAPIC register page */
	VCPU_T_EVENTS		= 10,	/* u64[EVENT_WORDS] */
	VCPU_T_MP_STATE		= 11,	/* u32 */
	VCPU_T_DEBUGREGS	= 12,	/* u64[6]: db0..3, dr6, dr7 */
	VCPU_T_TSC_KHZ		= 13,	/* u32, informational (0 = unknown) */
};

#define SEG_WORDS	3
#define SREGS_WORDS	(8 * SEG_WORDS + 2 * 2 + 7)	/* 8 segments, gdt/idt, 7 registers */
#define EVENT_WORDS	21
#define FPU_WORDS	(8 * 2 + 5 + 16 * 2 + 1)
#define XSAVE_MAX	(64u << 10)	/* AMX and friends stay far below */
#define MSRS_MAX	2048u		/* KVM lists ~100-200 */
#define XCRS_MAX	KVM_MAX_XCRS

/* ---- packing ---- */

static void pack_seg(uint64_t *w, const struct kvm_segment *s)
{
	w[0] = s->base;
	w[1] = (uint64_t)s->limit | (uint64_t)s->selector << 32 | (uint64_t)s->type << 48;
	w[2] = (uint64_t)s->present | (uint64_t)s->dpl << 8 | (uint64_t)s->db << 16 |
	       (uint64_t)s->s << 24 | (uint64_t)s->l << 32 | (uint64_t)s->g << 40 |
	       (uint64_t)s->avl << 48 | (uint64_t)s->unusable << 56;
}

static void unpack_seg(const uint64_t *w, struct kvm_segment *s)
{
	memset(s, 0, sizeof(*s));
	s->base = w[0];
	s->limit = (uint32_t)w[1];
	s->selector = (uint16_t)(w[1] >> 32);
	s->type = (uint8_t)(w[1] >> 48);
	s->present = (uint8_t)w[2];
	s->dpl = (uint8_t)(w[2] >> 8);
	s->db = (uint8_t)(w[2] >> 16);
	s->s = (uint8_t)(w[2] >> 24);
	s->l = (uint8_t)(w[2] >> 32);
	s->g = (uint8_t)(w[2] >> 40);
	s->avl = (uint8_t)(w[2] >> 48);
	s->unusable = (uint8_t)(w[2] >> 56);
}

/*
 * The common part of kvm_sregs and kvm_sregs2: cs ds es fs gs ss tr ldt (3 words each),
 * gdt and idt (base, limit), cr0 cr2 cr3 cr4 cr8 efer apic_base. A macro because the two
 * KVM structs share the member names but not the type.
 */
#define PACK_SREGS(w, s) do {							\
	const struct kvm_segment *_seg[8] = { &(s)->cs, &(s)->ds, &(s)->es, &(s)->fs,	\
		&(s)->gs, &(s)->ss, &(s)->tr, &(s)->ldt };			\
	unsigned int _i, _k = 0;						\
	for (_i = 0; _i < 8; _i++, _k += SEG_WORDS)				\
		pack_seg(&(w)[_k], _seg[_i]);					\
	(w)[_k++] = (s)->gdt.base; (w)[_k++] = (s)->gdt.limit;			\
	(w)[_k++] = (s)->idt.base; (w)[_k++] = (s)->idt.limit;			\
	(w)[_k++] = (s)->cr0; (w)[_k++] = (s)->cr2; (w)[_k++] = (s)->cr3;	\
	(w)[_k++] = (s)->cr4; (w)[_k++] = (s)->cr8; (w)[_k++] = (s)->efer;	\
	(w)[_k++] = (s)->apic_base;						\
} while (0)

#define UNPACK_SREGS(w, s) do {							\
	struct kvm_segment *_seg[8] = { &(s)->cs, &(s)->ds, &(s)->es, &(s)->fs,	\
		&(s)->gs, &(s)->ss, &(s)->tr, &(s)->ldt };			\
	unsigned int _i, _k = 0;						\
	for (_i = 0; _i < 8; _i++, _k += SEG_WORDS)				\
		unpack_seg(&(w)[_k], _seg[_i]);					\
	(s)->gdt.base = (w)[_k++]; (s)->gdt.limit = (uint16_t)(w)[_k++];	\
	(s)->idt.base = (w)[_k++]; (s)->idt.limit = (uint16_t)(w)[_k++];	\
	(s)->cr0 = (w)[_k++]; (s)->cr2 = (w)[_k++]; (s)->cr3 = (w)[_k++];	\
	(s)->cr4 = (w)[_k++]; (s)->cr8 = (w)[_k++]; (s)->efer = (w)[_k++];	\
	(s)->apic_base = (w)[_k++];						\
} while (0)

static void pack_regs(uint64_t *w, const struct kvm_regs *r)
{
	const uint64_t v[18] = { r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rsp, r->rbp,
				 r->r8, r->r9, r->r10, r->r11, r->r12, r->r13, r->r14, r->r15,
				 r->rip, r->rflags };

	memcpy(w, v, sizeof(v));
}

static void unpack_regs(const uint64_t *w, struct kvm_regs *r)
{
	memset(r, 0, sizeof(*r));
	r->rax = w[0]; r->rbx = w[1]; r->rcx = w[2]; r->rdx = w[3];
	r->rsi = w[4]; r->rdi = w[5]; r->rsp = w[6]; r->rbp = w[7];
	r->r8 = w[8]; r->r9 = w[9]; r->r10 = w[10]; r->r11 = w[11];
	r->r12 = w[12]; r->r13 = w[13]; r->r14 = w[14]; r->r15 = w[15];
	r->rip = w[16]; r->rflags = w[17];
}

static void pack_events(uint64_t *w, const struct kvm_vcpu_events *e)
{
	unsigned int k = 0;

	w[k++] = e->exception.injected; w[k++] = e->exception.nr;
	w[k++] = e->exception.has_error_code; w[k++] = e->exception.pending;
	w[k++] = e->exception.error_code;
	w[k++] = e->interrupt.injected; w[k++] = e->interrupt.nr;
	w[k++] = e->interrupt.soft; w[k++] = e->interrupt.shadow;
	w[k++] = e->nmi.injected; w[k++] = e->nmi.pending; w[k++] = e->nmi.masked;
	w[k++] = e->sipi_vector; w[k++] = e->flags;
	w[k++] = e->smi.smm; w[k++] = e->smi.pending; w[k++] = e->smi.smm_inside_nmi;
	w[k++] = e->smi.latched_init;
	w[k++] = e->triple_fault.pending;
	w[k++] = e->exception_has_payload; w[k++] = e->exception_payload;
}

static void unpack_events(const uint64_t *w, struct kvm_vcpu_events *e)
{
	unsigned int k = 0;

	memset(e, 0, sizeof(*e));
	e->exception.injected = (uint8_t)w[k++]; e->exception.nr = (uint8_t)w[k++];
	e->exception.has_error_code = (uint8_t)w[k++]; e->exception.pending = (uint8_t)w[k++];
	e->exception.error_code = (uint32_t)w[k++];
	e->interrupt.injected = (uint8_t)w[k++]; e->interrupt.nr = (uint8_t)w[k++];
	e->interrupt.soft = (uint8_t)w[k++]; e->interrupt.shadow = (uint8_t)w[k++];
	e->nmi.injected = (uint8_t)w[k++]; e->nmi.pending = (uint8_t)w[k++];
	e->nmi.masked = (uint8_t)w[k++];
	e->sipi_vector = (uint32_t)w[k++]; e->flags = (uint32_t)w[k++];
	e->smi.smm = (uint8_t)w[k++]; e->smi.pending = (uint8_t)w[k++];
	e->smi.smm_inside_nmi = (uint8_t)w[k++]; e->smi.latched_init = (uint8_t)w[k++];
	e->triple_fault.pending = (uint8_t)w[k++];
	e->exception_has_payload = (uint8_t)w[k++]; e->exception_payload = w[k++];
}

static void pack_fpu(uint64_t *w, const struct kvm_fpu *f)
{
	unsigned int i, k = 0;
	uint64_t lo, hi;

	for (i = 0; i < 8; i++) {
		memcpy(&lo, &f->fpr[i][0], 8);
		memcpy(&hi, &f->fpr[i][8], 8);
		w[k++] = lo;
		w[k++] = hi;
	}
	w[k++] = f->fcw | (uint64_t)f->fsw << 16 | (uint64_t)f->ftwx << 32 |
		 (uint64_t)f->last_opcode << 40;
	w[k++] = f->last_ip;
	w[k++] = f->last_dp;
	w[k++] = f->mxcsr;
	w[k++] = 0;
	for (i = 0; i < 16; i++) {
		memcpy(&lo, &f->xmm[i][0], 8);
		memcpy(&hi, &f->xmm[i][8], 8);
		w[k++] = lo;
		w[k++] = hi;
	}
	w[k++] = 0;
}

static void unpack_fpu(const uint64_t *w, struct kvm_fpu *f)
{
	unsigned int i, k = 0;

	memset(f, 0, sizeof(*f));
	for (i = 0; i < 8; i++, k += 2) {
		memcpy(&f->fpr[i][0], &w[k], 8);
		memcpy(&f->fpr[i][8], &w[k + 1], 8);
	}
	f->fcw = (uint16_t)w[k];
	f->fsw = (uint16_t)(w[k] >> 16);
	f->ftwx = (uint8_t)(w[k] >> 32);
	f->last_opcode = (uint16_t)(w[k] >> 40);
	k++;
	f->last_ip = w[k++];
	f->last_dp = w[k++];
	f->mxcsr = (uint32_t)w[k++];
	k++;
	for (i = 0; i < 16; i++, k += 2) {
		memcpy(&f->xmm[i][0], &w[k], 8);
		memcpy(&f->xmm[i][8], &w[k + 1], 8);
	}
}

/* ---- KVM capabilities this vCPU's host offers ---- */

static int cap(const struct vcpu *v, long c)
{
	return kvm_cap(&v->vm->kvm, c);
}

/* Bytes of the XSAVE area: KVM_CAP_XSAVE2's answer (≥ 4096), 4096 with plain XSAVE, 0 without. */
static size_t xsave_size(const struct vcpu *v)
{
	int n = cap(v, KVM_CAP_XSAVE2);

	if (n >= (int)sizeof(struct kvm_xsave))
		return (size_t)n;
	return cap(v, KVM_CAP_XSAVE) ? sizeof(struct kvm_xsave) : 0;
}

/* ---- MSRs ---- */

/*
 * Read every listed MSR KVM can read. KVM_GET_MSRS stops at the first MSR it cannot read
 * (one the vCPU's CPUID does not have) and returns how many it read; skip that one and go on.
 * @pairs gets (index, value) pairs; *@n the number of pairs.
 */
static int msrs_read(struct vcpu *v, uint64_t *pairs, size_t *n)
{
	const struct kvm_msr_list *list = v->vm->msrs;
	uint32_t total = list ? list->nmsrs : 0, done = 0, i, skipped = 0;
	struct kvm_msrs *m;
	int ret = 0;

	*n = 0;
	if (total > MSRS_MAX)
		total = MSRS_MAX;
	m = calloc(1, sizeof(*m) + total * sizeof(m->entries[0]));
	if (!m)
		return -ENOMEM;
	while (done < total) {
		m->nmsrs = total - done;
		for (i = 0; i < m->nmsrs; i++) {
			m->entries[i].index = list->indices[done + i];
			m->entries[i].data = 0;
		}
		ret = kvm_ioctl(v->fd, KVM_GET_MSRS, m);
		if (ret < 0) {
			log_err("vcpu%u: KVM_GET_MSRS: %s", v->id, strerror(-ret));
			goto out;
		}
		for (i = 0; i < (uint32_t)ret; i++) {
			pairs[2 * *n] = m->entries[i].index;
			pairs[2 * *n + 1] = m->entries[i].data;
			(*n)++;
		}
		done += (uint32_t)ret;
		if (done < total) {
			log_dbg("vcpu%u: MSR 0x%x not readable, not saved", v->id, list->indices[done]);
			done++;
			skipped++;
		}
	}
	ret = 0;
	log_dbg("vcpu%u: %zu MSRs saved, %u not readable", v->id, *n, skipped);
out:
	free(m);
	return ret;
}

/*
 * Write (index, value) pairs. A write KVM refuses is an error unless the MSR already holds
 * that value (read-only MSRs such as the microcode revision refuse even their own value).
 */
static int msrs_write(struct vcpu *v, const uint64_t *pairs, size_t n)
{
	struct kvm_msrs *m;
	size_t done = 0, i;
	int ret = 0;

	if (!n)
		return 0;
	m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));
	if (!m)
		return -ENOMEM;
	while (done < n) {
		m->nmsrs = (uint32_t)(n - done);
		for (i = 0; i < m->nmsrs; i++) {
			m->entries[i].index = (uint32_t)pairs[2 * (done + i)];
			m->entries[i].reserved = 0;
			m->entries[i].data = pairs[2 * (done + i) + 1];
		}
		ret = kvm_ioctl(v->fd, KVM_SET_MSRS, m);
		if (ret < 0) {
			log_err("vcpu%u: KVM_SET_MSRS: %s", v->id, strerror(-ret));
			goto out;
		}
		done += (size_t)ret;
		if (done < n) {
			struct { struct kvm_msrs h; struct kvm_msr_entry e; } one = {
				.h.nmsrs = 1, .e.index = (uint32_t)pairs[2 * done] };

			if (kvm_ioctl(v->fd, KVM_GET_MSRS, &one) == 1 &&
			    one.e.data == pairs[2 * done + 1]) {
				done++;
				continue;
			}
			log_err("vcpu%u: KVM refuses MSR 0x%" PRIx64 " = 0x%" PRIx64
				" from the saved state", v->id, pairs[2 * done], pairs[2 * done + 1]);
			ret = -EINVAL;
			goto out;
		}
	}
	ret = 0;
out:
	free(m);
	return ret;
}

/* ---- save ---- */

static int vcpu_save(void *opaque, struct state_writer *w)
{
	struct vcpu *v = opaque;
	uint64_t words[FPU_WORDS > SREGS_WORDS ? FPU_WORDS : SREGS_WORDS];
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	struct kvm_regs regs;
	uint64_t *msrs = NULL;
	size_t xs = xsave_size(v), n, i;
	void *xbuf = NULL;
	int ret, khz;

	ret = kvm_ioctl(v->fd, KVM_GET_REGS, &regs);
	if (ret < 0)
		goto err_ioctl_regs;
	pack_regs(words, &regs);
	sw_u64_array(w, VCPU_T_REGS, words, 18, STATE_F_REQUIRED);

	if (cap(v, KVM_CAP_SREGS2)) {
		struct kvm_sregs2 s2;
		uint64_t pd[5];

		ret = kvm_ioctl(v->fd, KVM_GET_SREGS2, &s2);
		if (ret < 0) {
			log_err("vcpu%u: KVM_GET_SREGS2: %s", v->id, strerror(-ret));
			return ret;
		}
		PACK_SREGS(words, &s2);
		sw_u64_array(w, VCPU_T_SREGS, words, SREGS_WORDS, STATE_F_REQUIRED);
		pd[0] = s2.flags;
		for (i = 0; i < 4; i++)
			pd[1 + i] = s2.pdptrs[i];
		sw_u64_array(w, VCPU_T_PDPTRS, pd, 5, 0);
	} else {
		struct kvm_sregs s;

		ret = kvm_ioctl(v->fd, KVM_GET_SREGS, &s);
		if (ret < 0) {
			log_err("vcpu%u: KVM_GET_SREGS: %s", v->id, strerror(-ret));
			return ret;
		}
		PACK_SREGS(words, &s);
		sw_u64_array(w, VCPU_T_SREGS, words, SREGS_WORDS, STATE_F_REQUIRED);
		sw_u64_array(w, VCPU_T_IRQ_BITMAP, (const uint64_t *)s.interrupt_bitmap, 4, 0);
	}

	if (xs) {
		xbuf = calloc(1, xs);
		if (!xbuf)
			return -ENOMEM;
		ret = kvm_ioctl(v->fd, xs > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
				xbuf);
		if (ret < 0) {
			log_err("vcpu%u: KVM_GET_XSAVE: %s", v->id, strerror(-ret));
			goto out;
		}
		sw_bytes(w, VCPU_T_XSAVE, xbuf, xs, STATE_F_REQUIRED);
	} else {
		struct kvm_fpu fpu;

		ret = kvm_ioctl(v->fd, KVM_GET_FPU, &fpu);
		if (ret < 0) {
			log_err("vcpu%u: KVM_GET_FPU: %s", v->id, strerror(-ret));
			return ret;
		}
		pack_fpu(words, &fpu);
		sw_u64_array(w, VCPU_T_FPU, words, FPU_WORDS, STATE_F_REQUIRED);
	}

	if (cap(v, KVM_CAP_XCRS)) {
		struct kvm_xcrs xcrs;
		uint64_t pairs[2 * XCRS_MAX];

		ret = kvm_ioctl(v->fd, KVM_GET_XCRS, &xcrs);
		if (ret < 0) {
			log_err("vcpu%u: KVM_GET_XCRS: %s", v->id, strerror(-ret));
			goto out;
		}
		n = xcrs.nr_xcrs > XCRS_MAX ? XCRS_MAX : xcrs.nr_xcrs;
		for (i = 0; i < n; i++) {
			pairs[2 * i] = xcrs.xcrs[i].xcr;
			pairs[2 * i + 1] = xcrs.xcrs[i].value;
		}
		sw_u64_array(w, VCPU_T_XCRS, pairs, 2 * n, STATE_F_REQUIRED);
	}

	msrs = calloc(2 * MSRS_MAX, sizeof(*msrs));
	if (!msrs) {
		ret = -ENOMEM;
		goto out;
	}
	ret = msrs_read(v, msrs, &n);
	if (ret < 0)
		goto out;
	sw_u64_array(w, VCPU_T_MSRS, msrs, 2 * n, STATE_F_REQUIRED);

	ret = kvm_ioctl(v->fd, KVM_GET_LAPIC, &lapic);
	if (ret < 0) {
		log_err("vcpu%u: KVM_GET_LAPIC: %s", v->id, strerror(-ret));
		goto out;
	}
	sw_bytes(w, VCPU_T_LAPIC, lapic.regs, sizeof(lapic.regs), STATE_F_REQUIRED);

	ret = kvm_ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev);
	if (ret < 0) {
		log_err("vcpu%u: KVM_GET_VCPU_EVENTS: %s", v->id, strerror(-ret));
		goto out;
	}
	pack_events(words, &ev);
	sw_u64_array(w, VCPU_T_EVENTS, words, EVENT_WORDS, STATE_F_REQUIRED);

	ret = kvm_ioctl(v->fd, KVM_GET_MP_STATE, &mp);
	if (ret < 0) {
		log_err("vcpu%u: KVM_GET_MP_STATE: %s", v->id, strerror(-ret));
		goto out;
	}
	sw_u32(w, VCPU_T_MP_STATE, mp.mp_state, STATE_F_REQUIRED);

	ret = kvm_ioctl(v->fd, KVM_GET_DEBUGREGS, &dbg);
	if (ret < 0) {
		log_err("vcpu%u: KVM_GET_DEBUGREGS: %s", v->id, strerror(-ret));
		goto out;
	}
	for (i = 0; i < 4; i++)
		words[i] = dbg.db[i];
	words[4] = dbg.dr6;
	words[5] = dbg.dr7;
	sw_u64_array(w, VCPU_T_DEBUGREGS, words, 6, 0);

	khz = kvm_ioctl(v->fd, KVM_GET_TSC_KHZ, NULL);
	sw_u32(w, VCPU_T_TSC_KHZ, khz > 0 ? (uint32_t)khz : 0, 0);
	ret = sw_error(w);
out:
	free(msrs);
	free(xbuf);
	return ret;

err_ioctl_regs:
	log_err("vcpu%u: KVM_GET_REGS: %s", v->id, strerror(-ret));
	return ret;
}

/* ---- load ---- */

/* Everything a section holds, parsed and checked before any KVM_SET_*. */
struct vcpu_image {
	uint64_t regs[18], sregs[SREGS_WORDS], irq_bitmap[4], pdptrs[5], fpu[FPU_WORDS];
	uint64_t dbg[6];
	uint64_t events[EVENT_WORDS];
	uint64_t xcrs[2 * XCRS_MAX];
	uint64_t *msrs;			/* 2 * MSRS_MAX */
	uint8_t lapic[KVM_APIC_REG_SIZE];
	uint8_t *xsave;			/* local XSAVE size, zero-padded */
	size_t nr_xcrs, nr_msrs, xsave_len;
	uint32_t mp_state, tsc_khz;
	bool has_regs, has_sregs, has_bitmap, has_pdptrs, has_fpu, has_xsave, has_xcrs, has_msrs;
	bool has_lapic, has_events, has_mp, has_dbg;
};

static int parse_u64s(const struct state_field *f, uint64_t *dst, size_t want)
{
	size_t n;
	int ret = sr_u64_array(f, dst, want, &n);

	if (ret < 0)
		return ret;
	return n == want ? 0 : -EBADMSG;
}

static int vcpu_parse(struct vcpu *v, struct state_reader *r, struct vcpu_image *im,
		      size_t local_xsave)
{
	struct state_field f;
	size_t n;
	int ret;

	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case VCPU_T_REGS:
			ret = parse_u64s(&f, im->regs, 18);
			im->has_regs = true;
			break;
		case VCPU_T_SREGS:
			ret = parse_u64s(&f, im->sregs, SREGS_WORDS);
			im->has_sregs = true;
			break;
		case VCPU_T_IRQ_BITMAP:
			ret = parse_u64s(&f, im->irq_bitmap, 4);
			im->has_bitmap = true;
			break;
		case VCPU_T_PDPTRS:
			ret = parse_u64s(&f, im->pdptrs, 5);
			im->has_pdptrs = true;
			break;
		case VCPU_T_FPU:
			ret = parse_u64s(&f, im->fpu, FPU_WORDS);
			im->has_fpu = true;
			break;
		case VCPU_T_XSAVE:
			/*
			 * A bigger area from a host with more XSAVE components is fine as long
			 * as the part this host does not have is all zero (features unused).
			 */
			if (f.len > XSAVE_MAX || !local_xsave) {
				ret = -EBADMSG;
				break;
			}
			for (n = local_xsave; n < f.len; n++)
				if (f.data[n]) {
					log_err("vcpu%u: saved XSAVE state uses %u bytes, this host's "
						"KVM has %zu", v->id, f.len, local_xsave);
					return -EPROTO;
				}
			memcpy(im->xsave, f.data, f.len < local_xsave ? f.len : local_xsave);
			im->xsave_len = f.len;
			im->has_xsave = true;
			break;
		case VCPU_T_XCRS:
			ret = sr_u64_array(&f, im->xcrs, 2 * XCRS_MAX, &n);
			if (ret == 0 && n % 2)
				ret = -EBADMSG;
			im->nr_xcrs = n / 2;
			im->has_xcrs = true;
			break;
		case VCPU_T_MSRS:
			ret = sr_u64_array(&f, im->msrs, 2 * MSRS_MAX, &n);
			if (ret == 0 && n % 2)
				ret = -EBADMSG;
			for (size_t i = 0; ret == 0 && i < n; i += 2)
				if (im->msrs[i] > UINT32_MAX)
					ret = -EBADMSG;
			im->nr_msrs = n / 2;
			im->has_msrs = true;
			break;
		case VCPU_T_LAPIC:
			ret = sr_bytes(&f, im->lapic, sizeof(im->lapic));
			im->has_lapic = true;
			break;
		case VCPU_T_EVENTS:
			ret = parse_u64s(&f, im->events, EVENT_WORDS);
			im->has_events = true;
			break;
		case VCPU_T_MP_STATE:
			ret = sr_u32(&f, &im->mp_state);
			im->has_mp = true;
			break;
		case VCPU_T_DEBUGREGS:
			ret = parse_u64s(&f, im->dbg, 6);
			im->has_dbg = true;
			break;
		case VCPU_T_TSC_KHZ:
			ret = sr_u32(&f, &im->tsc_khz);
			break;
		default:
			ret = sr_skip_unknown(r, &f);
			break;
		}
		if (ret < 0) {
			if (ret == -EBADMSG)
				log_err("vcpu%u: malformed field %u in the saved state", v->id, f.tag);
			return ret;
		}
	}
	if (ret < 0)
		return ret;
	if (!im->has_regs || !im->has_sregs || !(im->has_xsave || im->has_fpu) || !im->has_msrs ||
	    !im->has_lapic || !im->has_events || !im->has_mp) {
		log_err("vcpu%u: saved state lacks a required part", v->id);
		return -EBADMSG;
	}
	if (im->has_fpu && !im->has_xsave && local_xsave) {
		/* Harmless either way, but say so: legacy FPU state loses AVX registers. */
		log_warn("vcpu%u: saved state has only legacy FPU registers", v->id);
	}
	if (im->mp_state > KVM_MP_STATE_SUSPENDED) {
		log_err("vcpu%u: saved MP state %u unknown", v->id, im->mp_state);
		return -EBADMSG;
	}
	return 0;
}

static int set(struct vcpu *v, unsigned long req, void *arg, const char *what)
{
	int ret = kvm_ioctl(v->fd, req, arg);

	if (ret < 0)
		log_err("vcpu%u: %s: %s", v->id, what, strerror(-ret));
	return ret < 0 ? ret : 0;
}

static int vcpu_apply(struct vcpu *v, struct vcpu_image *im, size_t local_xsave)
{
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	size_t i;
	int ret;

	unpack_regs(im->regs, &regs);
	ret = set(v, KVM_SET_REGS, &regs, "KVM_SET_REGS");
	if (ret < 0)
		return ret;

	if (im->has_xsave) {
		ret = set(v, KVM_SET_XSAVE, im->xsave, "KVM_SET_XSAVE");
	} else {
		struct kvm_fpu fpu;

		unpack_fpu(im->fpu, &fpu);
		ret = set(v, KVM_SET_FPU, &fpu, "KVM_SET_FPU");
	}
	if (ret < 0)
		return ret;

	if (im->has_xcrs && im->nr_xcrs) {
		struct kvm_xcrs xcrs;

		memset(&xcrs, 0, sizeof(xcrs));
		xcrs.nr_xcrs = (uint32_t)im->nr_xcrs;
		for (i = 0; i < im->nr_xcrs; i++) {
			xcrs.xcrs[i].xcr = (uint32_t)im->xcrs[2 * i];
			xcrs.xcrs[i].value = im->xcrs[2 * i + 1];
		}
		ret = set(v, KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");
		if (ret < 0)
			return ret;
	}

	if (cap(v, KVM_CAP_SREGS2)) {
		struct kvm_sregs2 s2;

		memset(&s2, 0, sizeof(s2));
		UNPACK_SREGS(im->sregs, &s2);
		if (im->has_pdptrs) {
			s2.flags = im->pdptrs[0] & KVM_SREGS2_FLAGS_PDPTRS_VALID;
			for (i = 0; i < 4; i++)
				s2.pdptrs[i] = im->pdptrs[1 + i];
		}
		ret = set(v, KVM_SET_SREGS2, &s2, "KVM_SET_SREGS2");
	} else {
		struct kvm_sregs s;

		memset(&s, 0, sizeof(s));
		UNPACK_SREGS(im->sregs, &s);
		if (im->has_bitmap)
			memcpy(s.interrupt_bitmap, im->irq_bitmap, sizeof(s.interrupt_bitmap));
		ret = set(v, KVM_SET_SREGS, &s, "KVM_SET_SREGS");
	}
	if (ret < 0)
		return ret;

	ret = msrs_write(v, im->msrs, im->nr_msrs);
	if (ret < 0)
		return ret;

	mp.mp_state = im->mp_state;
	ret = set(v, KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
	if (ret < 0)
		return ret;

	memcpy(lapic.regs, im->lapic, sizeof(lapic.regs));
	ret = set(v, KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
	if (ret < 0)
		return ret;
	/*
	 * KVM_SET_LAPIC rebuilds the LAPIC timer from LVTT/TMICT and drops a TSC deadline armed
	 * before it, so the deadline MSR goes in again, after (QEMU orders it the same way). Without
	 * this an idle vCPU whose next wake-up was its deadline slept forever on the destination:
	 * a migrated guest that then never finished `poweroff`.
	 */
	for (size_t k = 0; k < im->nr_msrs; k++) {
		if (im->msrs[2 * k] != MSR_TSC_DEADLINE)
			continue;
		ret = msrs_write(v, &im->msrs[2 * k], 1);
		if (ret < 0)
			return ret;
		break;
	}

	unpack_events(im->events, &ev);
	/*
	 * Only what this monitor enables: no exception payloads or triple-fault events (their
	 * capabilities are off), SMM state only if the source reported it. The SIPI vector is
	 * always valid: an AP waiting for SIPI keeps it.
	 */
	ev.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW |
		    KVM_VCPUEVENT_VALID_SMM;
	ev.flags |= KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	ev.exception_has_payload = 0;
	ev.triple_fault.pending = 0;
	ret = set(v, KVM_SET_VCPU_EVENTS, &ev, "KVM_SET_VCPU_EVENTS");
	if (ret < 0)
		return ret;

	if (im->has_dbg) {
		struct kvm_debugregs dbg;

		memset(&dbg, 0, sizeof(dbg));
		for (i = 0; i < 4; i++)
			dbg.db[i] = im->dbg[i];
		dbg.dr6 = im->dbg[4];
		dbg.dr7 = im->dbg[5];
		ret = set(v, KVM_SET_DEBUGREGS, &dbg, "KVM_SET_DEBUGREGS");
		if (ret < 0)
			return ret;
	}
	if (im->tsc_khz) {
		int khz = kvm_ioctl(v->fd, KVM_GET_TSC_KHZ, NULL);

		/* A few kHz apart is calibration noise between hosts of one model. */
		if (khz > 0 && (uint32_t)abs(khz - (int)im->tsc_khz) > im->tsc_khz / 1000) {
			if (!cap(v, KVM_CAP_TSC_CONTROL) ||
			    kvm_ioctl(v->fd, KVM_SET_TSC_KHZ, (void *)(uintptr_t)im->tsc_khz) < 0)
				log_warn("vcpu%u: guest TSC ran at %u kHz, this host's at %d kHz "
					 "(no TSC scaling): guest time may drift until it "
					 "recalibrates", v->id, im->tsc_khz, khz);
		}
	}
	(void)local_xsave;
	return 0;
}

static int vcpu_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct vcpu *v = opaque;
	size_t xs = xsave_size(v);
	struct vcpu_image *im;
	int ret = -ENOMEM;

	im = calloc(1, sizeof(*im));
	if (!im)
		return -ENOMEM;
	im->msrs = calloc(2 * MSRS_MAX, sizeof(uint64_t));
	/* KVM_SET_XSAVE reads sizeof(struct kvm_xsave) at least, more with XSAVE2. */
	im->xsave = calloc(1, xs > sizeof(struct kvm_xsave) ? xs : sizeof(struct kvm_xsave));
	if (!im->msrs || !im->xsave)
		goto out;
	ret = vcpu_parse(v, r, im, xs);
	if (ret == 0)
		ret = vcpu_apply(v, im, xs);
out:
	free(im->xsave);
	free(im->msrs);
	free(im);
	return ret;
}

const struct state_ops vcpu_state_ops = {
	.name = "vcpu",
	.version = 1,
	.min_version = 1,
	.save = vcpu_save,
	.load = vcpu_load,
};
