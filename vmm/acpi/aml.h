/* SPDX-License-Identifier: MIT */
/*
 * A small AML (ACPI Machine Language) writer: enough to describe the DSDT objects this VMM
 * needs (names, scopes, devices, packages, resource templates, short methods). AML is a
 * prefix encoding in which every scope-like object carries its total length ("PkgLength",
 * ACPI 6.5 §20.2.4) in front of its body; the writer opens such objects with *_begin(),
 * appends the body, and closes them with aml_end(), which back-patches the length.
 *
 * Errors (allocation failure, unbalanced begin/end, a bad name) are sticky: every call after
 * the first error does nothing and aml_error() reports it, so callers build a whole block
 * and check once.
 *
 * Example (what the PCI code writes for its host bridge):
 *	aml_scope_begin(a, "\\_SB_");
 *	  aml_device_begin(a, "PCI0");
 *	    aml_name_eisaid(a, "_HID", "PNP0A08");
 *	    aml_name_begin(a, "_CRS");
 *	      aml_restemplate_begin(a);
 *	        aml_res_word_bus(a, 0, 255);
 *	        ...
 *	      aml_restemplate_end(a);
 *	  aml_end(a);
 *	aml_end(a);
 *
 * Not thread-safe; a writer is used by one thread at start-up.
 */
#ifndef VMM_ACPI_AML_H
#define VMM_ACPI_AML_H

#include <stddef.h>
#include <stdint.h>

#define AML_MAX_DEPTH	16

struct aml {
	uint8_t *buf;
	size_t len, cap;
	size_t open[AML_MAX_DEPTH];	/* body start offset of each open object */
	uint8_t kind[AML_MAX_DEPTH];	/* what each open object is (pkglength or restemplate) */
	unsigned int depth;
	int err;			/* first error, -errno; sticky */
};

void aml_init(struct aml *a);
void aml_free(struct aml *a);
/* 0, or the first error: -ENOMEM, -EINVAL (bad name/encoding), -EPROTO (begin/end unbalanced). */
int  aml_error(const struct aml *a);

/* Raw bytes, for opcodes this writer has no helper for. */
void aml_bytes(struct aml *a, const void *p, size_t n);
void aml_byte(struct aml *a, uint8_t b);

/*
 * A name path: "XYZ" (padded to "XYZ_"), "\\_SB_.PCI0", "^FOO". Segments are 1–4 characters
 * of [A-Z0-9_], the first not a digit.
 */
void aml_namestring(struct aml *a, const char *path);

/* Data objects. aml_int() picks the shortest encoding (Zero, One, Byte/Word/DWord/QWord). */
void aml_int(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* An EISA id like "PNP0501" compressed to its 32-bit integer form (ACPI 6.5 §19.6.35). */
void aml_eisaid(struct aml *a, const char *id);
void aml_arg(struct aml *a, unsigned int n);	/* Arg0..Arg6 */
void aml_local(struct aml *a, unsigned int n);	/* Local0..Local7 */

/* Name(path, <object>): write the object right after this call. */
void aml_name_begin(struct aml *a, const char *path);
void aml_name_int(struct aml *a, const char *path, uint64_t v);
void aml_name_string(struct aml *a, const char *path, const char *s);
void aml_name_eisaid(struct aml *a, const char *path, const char *id);

/* Scope-like objects, each closed by aml_end(). */
void aml_scope_begin(struct aml *a, const char *path);
void aml_device_begin(struct aml *a, const char *path);
/* Method(path, nargs, NotSerialized/Serialized): body = TermList. */
void aml_method_begin(struct aml *a, const char *path, unsigned int nargs, int serialized);
/* Package(n){...}: write exactly @nelems data objects, then aml_end(). */
void aml_package_begin(struct aml *a, unsigned int nelems);
/* Buffer(){bytes}; its size is computed at aml_end(). */
void aml_buffer_begin(struct aml *a);
void aml_end(struct aml *a);

/* Return(<object>): write the object after this call. */
void aml_return(struct aml *a);

/*
 * Resource templates (ACPI 6.5 §6.4): a Buffer of descriptors closed by an End Tag, whose
 * checksum byte is written as 0 ("treated as correct"). Use in place of a data object.
 */
void aml_restemplate_begin(struct aml *a);
void aml_restemplate_end(struct aml *a);
void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
void aml_res_irq_noflags(struct aml *a, unsigned int irq);	/* ISA IRQ 0..15, edge high */
/* Producer windows as a host bridge declares them (MinFixed, MaxFixed, PosDecode). */
void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max);
void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max);
void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max, int cacheable);
void aml_res_qword_mem(struct aml *a, uint64_t min, uint64_t max, int cacheable);
/* Memory32Fixed(ReadWrite, base, len): a consumer range such as a device's MMIO. */
void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len);

#endif
