// SPDX-License-Identifier: MIT
/*
 * MSI-X capability, table, PBA and delivery (see msix.h). Table entries are kept exactly as
 * the guest wrote them; what KVM has is tracked per vector (route_addr/route_data) so a
 * route is only rewritten when it changed — KVM_SET_GSI_ROUTING costs an RCU grace period.
 */
#define LOG_TAG "msix"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/lib/log.h"
#include "vmm/pci/msix.h"
#include "vmm/pci/pci.h"

#define CAP_LEN 12

static bool vec_masked_locked(const struct msix *m, const struct msix_vec *v)
{
	return !m->enabled || m->func_masked || (v->ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

static uint64_t vec_addr(const struct msix_vec *v)
{
	return (uint64_t)v->addr_hi << 32 | v->addr_lo;
}

/*
 * Make KVM's view of an unmasked vector current: GSI, eventfd and irqfd on first use, then
 * the route. On failure the vector stays unrouted and msix_notify() falls back to
 * KVM_SIGNAL_MSI.
 */
static void vec_route_locked(struct msix *m, struct msix_vec *v)
{
	uint64_t addr = vec_addr(v);

	if (v->routed && v->route_addr == addr && v->route_data == v->data)
		return;
	if (v->efd < 0) {
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		if (efd < 0)
			return;
		if (irq_msi_alloc(m->irq, &v->gsi) < 0) {
			close(efd);
			return;
		}
		/* The route must exist before the irqfd is bound to the GSI. */
		if (irq_msi_set(m->irq, v->gsi, addr, v->data) < 0 ||
		    irq_irqfd_assign(m->irq, efd, v->gsi, -1) < 0) {
			irq_msi_free(m->irq, v->gsi);
			close(efd);
			return;
		}
		v->efd = efd;
	} else if (irq_msi_set(m->irq, v->gsi, addr, v->data) < 0) {
		v->routed = false;
		return;
	}
	v->routed = true;
	v->route_addr = addr;
	v->route_data = v->data;
}

static void vec_fire_locked(struct msix *m, struct msix_vec *v)
{
	uint64_t one = 1;

	m->fired++;
	if (v->routed && v->efd >= 0 && write(v->efd, &one, sizeof(one)) == sizeof(one))
		return;
	irq_signal_msi(m->irq, vec_addr(v), v->data);
}

static bool pba_test_clear(struct msix *m, uint16_t i)
{
	uint64_t bit = 1ull << (i % 64);
	bool was = m->pba[i / 64] & bit;

	m->pba[i / 64] &= ~bit;
	return was;
}

/* Vector @i may have become unmasked (or its entry changed): route, deliver a pending one. */
static void vec_update_locked(struct msix *m, uint16_t i)
{
	struct msix_vec *v = &m->vecs[i];

	if (vec_masked_locked(m, v))
		return;
	vec_route_locked(m, v);
	if (pba_test_clear(m, i))
		vec_fire_locked(m, v);
}

int msix_init(struct msix *m, struct pci_device *d, struct irq *irq, uint16_t nr,
	      unsigned int bar, uint32_t table_off, uint32_t pba_off)
{
	uint8_t cap;
	int ret;

	memset(m, 0, sizeof(*m));
	if (nr == 0 || nr > MSIX_MAX_VECTORS || bar >= PCI_NR_BARS || (table_off & 7) || (pba_off & 7))
		return -EINVAL;
	m->vecs = calloc(nr, sizeof(*m->vecs));
	m->pba = calloc((nr + 63) / 64, sizeof(uint64_t));
	if (!m->vecs || !m->pba) {
		ret = -ENOMEM;
		goto err;
	}
	ret = pci_device_add_cap(d, PCI_CAP_ID_MSIX, CAP_LEN, &cap);
	if (ret < 0)
		goto err;
	pci_cfg_set16(d, cap + PCI_MSIX_FLAGS, nr - 1, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	pci_cfg_set32(d, cap + PCI_MSIX_TABLE, table_off | bar, 0);
	pci_cfg_set32(d, cap + PCI_MSIX_PBA, pba_off | bar, 0);
	for (unsigned int i = 0; i < nr; i++) {
		m->vecs[i].efd = -1;
		m->vecs[i].ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;	/* reset state: masked */
	}
	pthread_mutex_init(&m->lock, NULL);
	m->pdev = d;
	m->irq = irq;
	m->nr = nr;
	m->cap = cap;
	d->msix = m;
	return 0;
err:
	free(m->vecs);
	free(m->pba);
	memset(m, 0, sizeof(*m));
	return ret;
}

void msix_destroy(struct msix *m)
{
	if (!m->vecs)
		return;
	for (unsigned int i = 0; i < m->nr; i++) {
		struct msix_vec *v = &m->vecs[i];

		if (v->efd < 0)
			continue;
		irq_irqfd_deassign(m->irq, v->efd, v->gsi);
		irq_msi_free(m->irq, v->gsi);
		close(v->efd);
	}
	if (m->pdev)
		m->pdev->msix = NULL;
	free(m->vecs);
	free(m->pba);
	pthread_mutex_destroy(&m->lock);
	memset(m, 0, sizeof(*m));
}

static uint32_t entry_dword(const struct msix_vec *v, unsigned int w)
{
	switch (w) {
	case 0: return v->addr_lo;
	case 1: return v->addr_hi;
	case 2: return v->data;
	default: return v->ctrl;
	}
}

void msix_table_read(struct msix *m, uint64_t off, void *data, uint32_t len)
{
	uint8_t *p = data;
	uint64_t val;

	memset(data, 0xff, len);
	if ((len != 4 && len != 8) || (off & (len - 1)) || off >= msix_table_size(m->nr))
		return;
	pthread_mutex_lock(&m->lock);
	val = entry_dword(&m->vecs[off / 16], (off % 16) / 4);
	if (len == 8)
		val |= (uint64_t)entry_dword(&m->vecs[off / 16], (off % 16) / 4 + 1) << 32;
	pthread_mutex_unlock(&m->lock);
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(val >> (8 * i));
}

static void entry_write_dword(struct msix_vec *v, unsigned int w, uint32_t val)
{
	switch (w) {
	case 0: v->addr_lo = val & ~3u; break;	/* bits 1:0 are reserved, read as 0 */
	case 1: v->addr_hi = val; break;
	case 2: v->data = val; break;
	default: v->ctrl = val & PCI_MSIX_ENTRY_CTRL_MASKBIT; break;
	}
}

void msix_table_write(struct msix *m, uint64_t off, const void *data, uint32_t len)
{
	const uint8_t *p = data;
	uint64_t val = 0;
	uint16_t i;

	if ((len != 4 && len != 8) || (off & (len - 1)) || off >= msix_table_size(m->nr)) {
		log_ratelimited(LOG_WARN, "%s: MSI-X table write of %u bytes at 0x%llx ignored",
				m->pdev->name, len, (unsigned long long)off);
		return;
	}
	for (uint32_t b = 0; b < len; b++)
		val |= (uint64_t)p[b] << (8 * b);
	i = (uint16_t)(off / 16);
	pthread_mutex_lock(&m->lock);
	entry_write_dword(&m->vecs[i], (off % 16) / 4, (uint32_t)val);
	if (len == 8)
		entry_write_dword(&m->vecs[i], (off % 16) / 4 + 1, (uint32_t)(val >> 32));
	vec_update_locked(m, i);
	pthread_mutex_unlock(&m->lock);
}

void msix_pba_read(struct msix *m, uint64_t off, void *data, uint32_t len)
{
	uint8_t *p = data;

	memset(data, 0, len);
	pthread_mutex_lock(&m->lock);
	for (uint32_t b = 0; b < len; b++) {
		uint64_t byte = off + b;

		if (byte < msix_pba_size(m->nr))
			p[b] = (uint8_t)(m->pba[byte / 8] >> (8 * (byte % 8)));
	}
	pthread_mutex_unlock(&m->lock);
}

void msix_ctrl_written(struct msix *m)
{
	uint16_t ctrl = pci_cfg_get16(m->pdev, m->cap + PCI_MSIX_FLAGS);

	pthread_mutex_lock(&m->lock);
	m->enabled = ctrl & PCI_MSIX_FLAGS_ENABLE;
	m->func_masked = ctrl & PCI_MSIX_FLAGS_MASKALL;
	for (uint16_t i = 0; i < m->nr; i++)
		vec_update_locked(m, i);
	pthread_mutex_unlock(&m->lock);
}

bool msix_enabled(struct msix *m)
{
	bool en;

	pthread_mutex_lock(&m->lock);
	en = m->enabled;
	pthread_mutex_unlock(&m->lock);
	return en;
}

int msix_notify(struct msix *m, uint16_t vec)
{
	struct msix_vec *v;

	if (vec >= m->nr)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	v = &m->vecs[vec];
	if (vec_masked_locked(m, v)) {
		m->pba[vec / 64] |= 1ull << (vec % 64);
		m->pended++;
	} else {
		vec_fire_locked(m, v);
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

void msix_reset(struct msix *m)
{
	pthread_mutex_lock(&m->lock);
	for (uint16_t i = 0; i < m->nr; i++) {
		struct msix_vec *v = &m->vecs[i];

		v->addr_lo = v->addr_hi = v->data = 0;
		v->ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;
	}
	memset(m->pba, 0, msix_pba_size(m->nr));
	pthread_mutex_unlock(&m->lock);
}

void msix_save(struct msix *m, struct msix_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&m->lock);
	st->nr = m->nr;
	for (uint16_t i = 0; i < m->nr; i++)
		for (unsigned int w = 0; w < 4; w++)
			st->table[i][w] = entry_dword(&m->vecs[i], w);
	memcpy(st->pba, m->pba, msix_pba_size(m->nr));
	pthread_mutex_unlock(&m->lock);
}

int msix_load(struct msix *m, const struct msix_state *st)
{
	if (st->nr != m->nr) {
		log_err("%s: saved MSI-X state has %u vectors, device has %u", m->pdev->name,
			st->nr, m->nr);
		return -EINVAL;
	}
	pthread_mutex_lock(&m->lock);
	for (uint16_t i = 0; i < m->nr; i++)
		for (unsigned int w = 0; w < 4; w++)
			entry_write_dword(&m->vecs[i], w, st->table[i][w]);
	memcpy(m->pba, st->pba, msix_pba_size(m->nr));
	/* Clear bits past the last vector: the stream is untrusted. */
	if (m->nr % 64)
		m->pba[m->nr / 64] &= (1ull << (m->nr % 64)) - 1;
	pthread_mutex_unlock(&m->lock);
	/* Enable/function mask come from config space: re-derive routes and pending deliveries. */
	msix_ctrl_written(m);
	return 0;
}
