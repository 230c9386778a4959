/* Serial output and the debug-exit port: prints HELLO-OK, exits with status 42. */
	.include "common.inc"
	.code64
	.globl _start
_start:
	PRINT msg, msg_len
	EXIT 42
msg:	.ascii "HELLO-OK\n"
	.set msg_len, . - msg
