/*
 * A timer interrupt through the in-kernel LAPIC: IDT, LAPIC software-enabled, periodic
 * timer on vector 0x40, then sti; hlt until three ticks arrived. Prints TIMER-OK and exits
 * 32. A stray vector prints UNEXPECTED-VECTOR and exits 0x7f; no tick leaves the vCPU halted
 * (the test's timeout catches it).
 */
	.include "common.inc"
	.set APIC_SVR, 0xf0
	.set APIC_EOI, 0xb0
	.set APIC_LVTT, 0x320
	.set APIC_TICR, 0x380
	.set APIC_TDCR, 0x3e0
	.set VEC_TIMER, 0x40
	.code64
	.globl _start
_start:
	call idt_init
	SET_GATE VEC_TIMER, tick
	xor %r12d, %r12d			/* tick count */
	mov $LAPIC, %rbx
	movl $0x1ff, APIC_SVR(%rbx)		/* enable, spurious vector 0xff */
	movl $0xb, APIC_TDCR(%rbx)		/* divide by 1 */
	movl $(0x20000 | VEC_TIMER), APIC_LVTT(%rbx)	/* periodic */
	movl $1000000, APIC_TICR(%rbx)		/* ~1 ms at KVM's 1 GHz APIC bus */
1:	sti
	hlt
	cli
	cmp $3, %r12d
	jb 1b
	movl $0x10000, APIC_LVTT(%rbx)		/* masked */
	PRINT msg, msg_len
	EXIT 32

tick:
	inc %r12d
	movl $0, APIC_EOI(%rbx)		/* rbx = LAPIC base, set in _start */
	iretq

	.include "gate.inc"
msg:	.ascii "TIMER-OK\n"
	.set msg_len, . - msg
