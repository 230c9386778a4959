/*
 * PIO and MMIO dispatch. Unclaimed ports and MMIO addresses read as all-ones and swallow
 * writes (vmm/bus.h); the UART is reached byte by byte (outb) and by string I/O (rep outsb,
 * several elements in one exit). Prints PIO-MMIO-OK and exits 16, or PIO-MMIO-BAD/17.
 */
	.include "common.inc"
	.set UNCLAIMED_PORT, 0x510
	.set UNCLAIMED_MMIO, 0xd0000000		/* PCI MMIO window, nothing mapped yet */
	.code64
	.globl _start
_start:
	/* byte-wise output: "PIO" */
	mov $COM1, %dx
	mov $'P', %al
	out %al, %dx
	mov $'I', %al
	out %al, %dx
	mov $'O', %al
	out %al, %dx

	mov $UNCLAIMED_PORT, %dx
	mov $0x12, %al
	out %al, %dx			/* dropped */
	in %dx, %al
	cmp $0xff, %al
	jne bad
	in %dx, %eax
	cmp $0xffffffff, %eax
	jne bad

	mov $UNCLAIMED_MMIO, %rbx
	movl $0x12345678, (%rbx)	/* dropped */
	mov (%rbx), %eax
	cmp $0xffffffff, %eax
	jne bad
	movzwl 6(%rbx), %eax
	cmp $0xffff, %eax
	jne bad
	mov (%rbx), %rax
	cmp $-1, %rax
	jne bad

	PRINT ok, ok_len
	EXIT 16
bad:
	PRINT nok, nok_len
	EXIT 17
ok:	.ascii "-MMIO-OK\n"
	.set ok_len, . - ok
nok:	.ascii "-MMIO-BAD\n"
	.set nok_len, . - nok
