/* A triple fault: an empty IDT, then #UD. The vmm must dump registers and exit with 4. */
	.include "common.inc"
	.code64
	.globl _start
_start:
	PRINT msg, msg_len
	lidt empty(%rip)
	mov $0x5a5a5a5a, %r15			/* recognisable in the register dump */
	ud2
msg:	.ascii "TRIPLE-NOW\n"
	.set msg_len, . - msg
	.align 8
empty:	.word 0
	.quad 0
