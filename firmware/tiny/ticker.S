/*
 * Runs until stopped: one line "TICK n" on COM1 about every 50 ms of LAPIC timer, for
 * pause/resume and control-socket tests (the console stops while paused).
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
	xor %r12d, %r12d
	mov $LAPIC, %rbx
	movl $0x1ff, APIC_SVR(%rbx)
	movl $0xb, APIC_TDCR(%rbx)
	movl $(0x20000 | VEC_TIMER), APIC_LVTT(%rbx)
	movl $50000000, APIC_TICR(%rbx)		/* ~50 ms */
	xor %r13d, %r13d			/* ticks printed */
1:	sti
	hlt
	cli
	cmp %r12d, %r13d
	je 1b
	mov %r12d, %r13d
	PRINT msg, msg_len
	/* the count as 8 hex digits */
	mov $COM1, %dx
	mov $8, %ecx
	mov %r13d, %r8d
2:	rol $4, %r8d
	mov %r8d, %eax
	and $0xf, %eax
	lea hex(%rip), %rsi
	mov (%rsi,%rax), %al
	out %al, %dx
	loop 2b
	mov $10, %al
	out %al, %dx
	jmp 1b

tick:
	inc %r12d
	movl $0, APIC_EOI(%rbx)		/* rbx = LAPIC base, set in _start */
	iretq

	.include "gate.inc"
msg:	.ascii "TICK "
	.set msg_len, . - msg
hex:	.ascii "0123456789abcdef"
