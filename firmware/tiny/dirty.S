/*
 * Memory dirtier and verifier for migration tests. Runs forever in passes over the 4096
 * pages at 4..20 MiB (run it with --memory 32M or more): pass n writes, into every page,
 * n at offset 0 and n ^ (page index) ^ MAGIC at offset 2048, then reads every page back and
 * checks both words. A page the migration lost or delivered stale holds an older pass's
 * values and fails the check: the guest prints "BAD <pass>" and exits with status 0x21 on
 * the debug-exit port. After every pass it prints "PASS <n>" (8 hex digits), so the console
 * of the destination must continue the source's sequence.
 */
	.include "common.inc"
	.set REGION, 0x400000
	.set NPAGES, 4096
	.set MAGIC, 0x5a5aa5a5c3c33c3c
	.code64
	.globl _start
_start:
	xor %r12, %r12			/* pass number */
	movabs $MAGIC, %r14
pass:
	inc %r12
	/* write */
	mov $REGION, %rdi
	xor %rcx, %rcx
1:	mov %r12, (%rdi)
	mov %r12, %rax
	xor %rcx, %rax
	xor %r14, %rax
	mov %rax, 2048(%rdi)
	add $4096, %rdi
	inc %rcx
	cmp $NPAGES, %rcx
	jb 1b
	/* verify */
	mov $REGION, %rdi
	xor %rcx, %rcx
2:	cmp %r12, (%rdi)
	jne bad
	mov %r12, %rax
	xor %rcx, %rax
	xor %r14, %rax
	cmp %rax, 2048(%rdi)
	jne bad
	add $4096, %rdi
	inc %rcx
	cmp $NPAGES, %rcx
	jb 2b
	PRINT msg_pass, msg_pass_len
	call hex8
	jmp pass

bad:
	PRINT msg_bad, msg_bad_len
	call hex8
	EXIT 0x21

/* print r12's low 32 bits as 8 hex digits and a newline */
hex8:
	mov $COM1, %dx
	mov $8, %ecx
	mov %r12d, %r8d
3:	rol $4, %r8d
	mov %r8d, %eax
	and $0xf, %eax
	lea hex(%rip), %rsi
	mov (%rsi,%rax), %al
	out %al, %dx
	loop 3b
	mov $10, %al
	out %al, %dx
	ret

msg_pass: .ascii "PASS "
	.set msg_pass_len, . - msg_pass
msg_bad: .ascii "BAD "
	.set msg_bad_len, . - msg_bad
hex:	.ascii "0123456789abcdef"
