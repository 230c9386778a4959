// SPDX-License-Identifier: MIT
/*
 * MSI-X and the irq module against a mocked kvm_ioctl: table reads/writes and their access
 * rules, vector and function masking, the PBA, routes (KVM_SET_GSI_ROUTING content, only
 * rewritten on change), irqfd delivery checked on the real eventfd, the KVM_SIGNAL_MSI
 * fallback, and save/load.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kvm_mock.h"
#include "vmm/irq.h"
#include "vmm/pci/msix.h"
#include "vmm/pci/pci.h"

#define NVEC 4
#define MSI_ADDR 0xfee00000u

struct fixture {
	struct irq irq;
	struct pci_bus pb;
	struct pci_device dev;
	struct msix m;
};

static void nop_rw(void *o, uint64_t off, void *d, uint32_t l) { memset(d, 0, l); }
static const struct bus_ops nop_ops = { .read = nop_rw };

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct pci_env env = { .vm_fd = 42, .ram_top = 1ull << 30 };

	assert_non_null(f);
	memset(&mock, 0, sizeof(mock));
	assert_int_equal(irq_init(&f->irq, 42, 0), 0);
	env.irq = &f->irq;
	assert_int_equal(pci_init(&f->pb, &env), 0);
	pci_device_init(&f->dev, "msixdev", 0x1af4, 0x1041, 0xff0000, 1, 0x1af4, 1);
	assert_int_equal(pci_device_set_bar(&f->dev, 0, 0x4000, true, false, &nop_ops, f), 0);
	assert_int_equal(msix_init(&f->m, &f->dev, &f->irq, NVEC, 0, 0x0, 0x800), 0);
	assert_int_equal(pci_register_device(&f->pb, &f->dev), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	msix_destroy(&f->m);
	pci_destroy(&f->pb);
	irq_destroy(&f->irq);
	free(f);
	return 0;
}

static void tbl_w32(struct fixture *f, unsigned int vec, unsigned int word, uint32_t v)
{
	msix_table_write(&f->m, vec * 16 + word * 4, &v, 4);
}

static uint32_t tbl_r32(struct fixture *f, unsigned int vec, unsigned int word)
{
	uint32_t v;

	msix_table_read(&f->m, vec * 16 + word * 4, &v, 4);
	return v;
}

static uint64_t pba(struct fixture *f)
{
	uint64_t v;

	msix_pba_read(&f->m, 0, &v, 8);
	return v;
}

static void ctrl_write(struct fixture *f, uint16_t v)
{
	pci_cfg_write(&f->pb, 0, f->dev.slot, 0, f->m.cap + PCI_MSIX_FLAGS, 2, v);
}

/* Program vector @vec (masked) with a distinct message. */
static void program(struct fixture *f, unsigned int vec, uint32_t data)
{
	tbl_w32(f, vec, 0, MSI_ADDR | (vec << 12));
	tbl_w32(f, vec, 1, 0);
	tbl_w32(f, vec, 2, data);
}

static uint64_t efd_count(struct fixture *f, unsigned int vec)
{
	uint64_t n = 0;

	if (f->m.vecs[vec].efd < 0 || read(f->m.vecs[vec].efd, &n, 8) != 8)
		return 0;
	return n;
}

static void test_irq_default_routes(void **state)
{
	struct fixture *f = *state;
	uint32_t gsi;

	/* 24 IOAPIC pins + 16 PIC inputs, as KVM's own default table. */
	assert_int_equal(f->irq.nr_routes, 40);
	assert_int_equal(mock.set_routing, 0);		/* init does not call KVM */
	assert_int_equal(irq_route_ioapic(&f->irq, 0, 2), 0);
	assert_int_equal(mock.set_routing, 1);
	assert_int_equal(mock.nr_routes, 40);
	for (unsigned int i = 0; i < mock.nr_routes; i++)
		if (mock.routes[i].gsi == 0 && mock.routes[i].u.irqchip.irqchip == KVM_IRQCHIP_IOAPIC)
			assert_int_equal(mock.routes[i].u.irqchip.pin, 2);
	assert_int_equal(irq_msi_alloc(&f->irq, &gsi), 0);
	assert_true(gsi >= IRQ_FIRST_MSI_GSI);
	assert_int_equal(irq_msi_set(&f->irq, 3, 0, 0), -EINVAL);	/* irqchip GSI */
	irq_msi_free(&f->irq, gsi);
}

static void test_capability(void **state)
{
	struct fixture *f = *state;
	unsigned int s = f->dev.slot;

	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, f->m.cap, 1), PCI_CAP_ID_MSIX);
	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, f->m.cap + PCI_MSIX_FLAGS, 2), NVEC - 1);
	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, f->m.cap + PCI_MSIX_TABLE, 4), 0x0);
	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, f->m.cap + PCI_MSIX_PBA, 4), 0x800);
	/* Table size and offsets are read-only; enable and function mask are not. */
	ctrl_write(f, 0xffff);
	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, f->m.cap + PCI_MSIX_FLAGS, 2),
			 PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL | (NVEC - 1));
	assert_true(msix_enabled(&f->m));
	pci_cfg_write(&f->pb, 0, s, 0, f->m.cap + PCI_MSIX_TABLE, 4, 0x1234);
	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, f->m.cap + PCI_MSIX_TABLE, 4), 0);
}

static void test_table_access_rules(void **state)
{
	struct fixture *f = *state;
	uint64_t q;
	uint16_t w = 0x5555;

	/* Reset state: every vector masked, message zero. */
	for (unsigned int v = 0; v < NVEC; v++)
		assert_int_equal(tbl_r32(f, v, 3), PCI_MSIX_ENTRY_CTRL_MASKBIT);
	program(f, 1, 0x4041);
	assert_int_equal(tbl_r32(f, 1, 0), MSI_ADDR | 0x1000);
	assert_int_equal(tbl_r32(f, 1, 2), 0x4041);
	/* Address bits 1:0 are reserved, control bits other than the mask too. */
	tbl_w32(f, 1, 0, MSI_ADDR | 3);
	assert_int_equal(tbl_r32(f, 1, 0), MSI_ADDR);
	tbl_w32(f, 1, 3, 0xfffffffe);
	assert_int_equal(tbl_r32(f, 1, 3), 0);
	/* QWORD access. */
	q = 0x0000000100000000ull | 0xfee01000u;
	msix_table_write(&f->m, 2 * 16, &q, 8);
	q = 0;
	msix_table_read(&f->m, 2 * 16, &q, 8);
	assert_int_equal(q, 0x00000001fee01000ull);
	/* Word and misaligned accesses are ignored (reads all-ones). */
	msix_table_write(&f->m, 2 * 16 + 8, &w, 2);
	assert_int_equal(tbl_r32(f, 2, 2), 0);
	q = 0;
	msix_table_read(&f->m, 2, &q, 4);
	assert_int_equal((uint32_t)q, 0xffffffff);
	/* Beyond the table: nothing. */
	tbl_w32(f, NVEC, 2, 1);
	assert_int_equal(tbl_r32(f, NVEC, 2), 0xffffffff);
	assert_int_equal(mock.calls, 0);	/* still disabled: KVM untouched */
}

static void test_pending_then_unmask_fires(void **state)
{
	struct fixture *f = *state;
	const struct kvm_irq_routing_entry *r;
	uint32_t gsi;

	program(f, 1, 0x4041);
	/* Disabled: a notification only sets the pending bit. */
	assert_int_equal(msix_notify(&f->m, 1), 0);
	assert_int_equal(pba(f), 1u << 1);
	assert_int_equal(mock.calls, 0);
	/* Enabled but vector still masked: still pending, no route. */
	ctrl_write(f, PCI_MSIX_FLAGS_ENABLE);
	assert_int_equal(mock.set_routing, 0);
	assert_int_equal(pba(f), 1u << 1);
	/* Unmask: route + irqfd set up, the pending message delivered, PBA cleared. */
	tbl_w32(f, 1, 3, 0);
	assert_int_equal(mock.set_routing, 1);
	assert_int_equal(mock.irqfd_assign, 1);
	gsi = f->m.vecs[1].gsi;
	assert_int_equal(mock.last_irqfd.gsi, gsi);
	assert_int_equal(mock.last_irqfd.fd, f->m.vecs[1].efd);
	r = mock_msi_route(gsi);
	assert_non_null(r);
	assert_int_equal(r->u.msi.address_lo, MSI_ADDR | 0x1000);
	assert_int_equal(r->u.msi.data, 0x4041);
	assert_int_equal(mock.nr_routes, 41);
	assert_int_equal(efd_count(f, 1), 1);
	assert_int_equal(pba(f), 0);
	/* Unmasked: delivered directly through the irqfd, twice = counter 2. */
	msix_notify(&f->m, 1);
	msix_notify(&f->m, 1);
	assert_int_equal(efd_count(f, 1), 2);
	assert_int_equal(mock.signal_msi, 0);
	/* Out-of-range vector: refused. */
	assert_int_equal(msix_notify(&f->m, NVEC), -EINVAL);
}

static void test_function_mask(void **state)
{
	struct fixture *f = *state;

	program(f, 0, 0x30);
	program(f, 3, 0x33);
	tbl_w32(f, 0, 3, 0);
	tbl_w32(f, 3, 3, 0);
	ctrl_write(f, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	assert_int_equal(mock.set_routing, 0);
	msix_notify(&f->m, 0);
	msix_notify(&f->m, 3);
	assert_int_equal(pba(f), (1u << 0) | (1u << 3));
	assert_int_equal(mock.signal_msi, 0);
	/* Function unmask: both routed and delivered. */
	ctrl_write(f, PCI_MSIX_FLAGS_ENABLE);
	assert_int_equal(pba(f), 0);
	assert_int_equal(efd_count(f, 0), 1);
	assert_int_equal(efd_count(f, 3), 1);
	assert_non_null(mock_msi_route(f->m.vecs[0].gsi));
	assert_non_null(mock_msi_route(f->m.vecs[3].gsi));
	assert_int_not_equal(f->m.vecs[0].gsi, f->m.vecs[3].gsi);
	/* Disable MSI-X: notifications pend again. */
	ctrl_write(f, 0);
	msix_notify(&f->m, 3);
	assert_int_equal(pba(f), 1u << 3);
	assert_int_equal(efd_count(f, 3), 0);
}

static void test_route_updates_only_on_change(void **state)
{
	struct fixture *f = *state;
	unsigned int n;

	program(f, 2, 0x50);
	ctrl_write(f, PCI_MSIX_FLAGS_ENABLE);
	tbl_w32(f, 2, 3, 0);
	n = mock.set_routing;
	assert_int_equal(n, 1);
	/* Same message rewritten while unmasked: no new table. */
	tbl_w32(f, 2, 2, 0x50);
	assert_int_equal(mock.set_routing, n);
	/* New data while unmasked (affinity change): route follows. */
	tbl_w32(f, 2, 2, 0x51);
	assert_int_equal(mock.set_routing, n + 1);
	assert_int_equal(mock_msi_route(f->m.vecs[2].gsi)->u.msi.data, 0x51);
	/* Masked, changed, unmasked: one update at unmask. */
	tbl_w32(f, 2, 3, 1);
	tbl_w32(f, 2, 2, 0x52);
	tbl_w32(f, 2, 0, MSI_ADDR | 0x5000);
	assert_int_equal(mock.set_routing, n + 1);
	tbl_w32(f, 2, 3, 0);
	assert_int_equal(mock.set_routing, n + 2);
	assert_int_equal(mock_msi_route(f->m.vecs[2].gsi)->u.msi.address_lo, MSI_ADDR | 0x5000);
	assert_int_equal(mock.irqfd_assign, 1);		/* the irqfd is reused */
}

static void test_signal_msi_fallback(void **state)
{
	struct fixture *f = *state;

	mock.fail_req = KVM_IRQFD;
	program(f, 1, 0x77);
	ctrl_write(f, PCI_MSIX_FLAGS_ENABLE);
	tbl_w32(f, 1, 3, 0);
	assert_int_equal(f->m.vecs[1].efd, -1);
	msix_notify(&f->m, 1);
	assert_int_equal(mock.signal_msi, 1);
	assert_int_equal(mock.last_msi.address_lo, MSI_ADDR | 0x1000);
	assert_int_equal(mock.last_msi.data, 0x77);
	/* The GSI was given back: the route table holds no stale MSI route. */
	assert_null(mock_msi_route(IRQ_FIRST_MSI_GSI));
}

static void test_save_load(void **state)
{
	struct fixture *f = *state;
	struct msix_state *st = malloc(sizeof(*st));

	assert_non_null(st);
	program(f, 3, 0x99);
	msix_notify(&f->m, 3);			/* pending (disabled) */
	msix_save(&f->m, st);
	assert_int_equal(st->nr, NVEC);
	assert_int_equal(st->table[3][2], 0x99);
	assert_int_equal(st->pba[0], 1u << 3);

	msix_reset(&f->m);
	assert_int_equal(pba(f), 0);
	assert_int_equal(tbl_r32(f, 3, 2), 0);
	/* Garbage past the last vector in the PBA is dropped. */
	st->pba[0] |= 1ull << 40;
	assert_int_equal(msix_load(&f->m, st), 0);
	assert_int_equal(tbl_r32(f, 3, 2), 0x99);
	assert_int_equal(pba(f), 1u << 3);
	st->nr = NVEC + 1;
	assert_int_equal(msix_load(&f->m, st), -EINVAL);
	free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_irq_default_routes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capability, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_access_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pending_then_unmask_fires, setup, teardown),
		cmocka_unit_test_setup_teardown(test_function_mask, setup, teardown),
		cmocka_unit_test_setup_teardown(test_route_updates_only_on_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_signal_msi_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	};
	return cmocka_run_group_tests_name("msix", tests, NULL, NULL);
}
