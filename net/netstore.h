/* SPDX-License-Identifier: MIT */
/*
 * Stored network definitions: one <name>.json per network in the state directory
 * ($VMCTL_STATE_DIR/networks, default /var/lib/vmctl/networks). The library API the CLI and the
 * future vmctld call; all return 0/-errno with a one-line log_err.
 */
#ifndef NET_NETSTORE_H
#define NET_NETSTORE_H

#include <stddef.h>

#include "net/netdef.h"

/* The directory definitions live in (created on demand by net_define). */
int net_store_dir(char *buf, size_t len);
/* Parse, validate, refuse an existing name (-EEXIST) or a NAT subnet overlapping a stored one
 * (-EADDRINUSE), then write it atomically (tmp + rename). On success *out (if given) = the def. */
int net_define(const char *json, struct netdef *out);
int net_lookup(const char *name, struct netdef *out);
int net_undefine(const char *name);
/* Up to max definitions, sorted by directory order; returns the count or -errno. */
int net_list(struct netdef *defs, size_t max);

#endif
