// SPDX-License-Identifier: MIT
/*
 * vmctl: the operator's command line. Today it carries the host's networks (issue 6), calling
 * the net/ library directly on this host; once vmctld exists the same commands go through it.
 *
 *   vmctl net define FILE|-|JSON     store a network definition (docs/networking.md)
 *   vmctl net undefine NAME          remove a stopped network's definition
 *   vmctl net start NAME             create its bridge (+ uplink, or NAT rules and dnsmasq)
 *   vmctl net stop [--force] NAME    remove all of that; refuses while VMs are attached
 *   vmctl net list [--json]          defined networks and whether each is started
 *   vmctl net show NAME              one network as JSON, with "active" and its VM ports
 *
 * Exit status: 0 done, 1 the operation failed (one line on stderr says why), 2 usage.
 * The state directory is $VMCTL_STATE_DIR (default /var/lib/vmctl), run files (dnsmasq's)
 * under $VMCTL_RUN_DIR (default /run/vmctl).
 */
#define LOG_TAG "vmctl"
#include <errno.h>
#include <json-c/json.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/link.h"
#include "net/netdef.h"
#include "net/netstore.h"
#include "net/network.h"
#include "vmm/lib/log.h"

#define MAX_NETWORKS 256

static int usage(void)
{
	fprintf(stderr,
		"usage: vmctl net define FILE|-|JSON\n"
		"       vmctl net undefine NAME\n"
		"       vmctl net start NAME\n"
		"       vmctl net stop [--force] NAME\n"
		"       vmctl net list [--json]\n"
		"       vmctl net show NAME\n");
	return 2;
}

/* The definition text: inline JSON, a file, or stdin ("-"). NULL after one error line. */
static char *read_definition(const char *arg)
{
	size_t len = 0, cap = 4096;
	FILE *f;
	char *buf;

	if (arg[0] == '{')
		return strdup(arg);
	f = strcmp(arg, "-") == 0 ? stdin : fopen(arg, "re");
	if (!f) {
		fprintf(stderr, "vmctl: %s: %s\n", arg, strerror(errno));
		return NULL;
	}
	buf = malloc(cap);
	while (buf) {
		size_t n = fread(buf + len, 1, cap - len - 1, f);

		len += n;
		if (n == 0)
			break;
		if (len + 1 == cap) {
			char *nb = cap < (1u << 20) ? realloc(buf, cap * 2) : NULL;

			if (!nb) {
				fprintf(stderr, "vmctl: %s: definition too large\n", arg);
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (buf)
		buf[len] = 0;
	if (f != stdin)
		fclose(f);
	return buf;
}

/* A network as JSON with its run state: the definition's fields + "active" + "vm_ports". */
static json_object *network_json(const struct netdef *d)
{
	char *text = netdef_to_json(d), br[IFNAMSIZ], ports[64][IFNAMSIZ];
	json_object *o = text ? json_tokener_parse(text) : NULL, *arr;
	int active = net_is_active(d), n;

	free(text);
	if (!o)
		return NULL;
	json_object_object_add(o, "active", json_object_new_boolean(active == 1));
	if (netdef_bridge_name(d, br, sizeof(br)) == 0) {
		json_object_object_add(o, "bridge", json_object_new_string(br));
		if (active == 1 && (n = link_bridge_ports(br, ports, 64)) >= 0) {
			arr = json_object_new_array();
			for (int i = 0; i < n && i < 64; i++)
				json_object_array_add(arr, json_object_new_string(ports[i]));
			json_object_object_add(o, "ports", arr);
		}
	}
	return o;
}

static int cmd_list(bool as_json)
{
	static struct netdef defs[MAX_NETWORKS];
	json_object *arr;
	int n = net_list(defs, MAX_NETWORKS);

	if (n < 0) {
		fprintf(stderr, "vmctl: listing networks: %s\n", strerror(-n));
		return 1;
	}
	if (as_json) {
		arr = json_object_new_array();
		for (int i = 0; i < n; i++) {
			json_object *o = network_json(&defs[i]);

			if (o)
				json_object_array_add(arr, o);
		}
		puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
		json_object_put(arr);
		return 0;
	}
	printf("%-12s %-8s %-7s %s\n", "NAME", "TYPE", "STATE", "DETAIL");
	for (int i = 0; i < n; i++) {
		const struct netdef *d = &defs[i];
		char detail[64];

		if (d->kind == NETDEF_NAT)
			snprintf(detail, sizeof(detail), "%u.%u.%u.%u/%u", d->subnet >> 24,
				 (d->subnet >> 16) & 255, (d->subnet >> 8) & 255, d->subnet & 255,
				 d->prefix);
		else if (d->vlan)
			snprintf(detail, sizeof(detail), "%s vlan %u", d->host_port, d->vlan);
		else
			snprintf(detail, sizeof(detail), "%s", d->host_port);
		printf("%-12s %-8s %-7s %s mtu %u\n", d->name,
		       d->kind == NETDEF_NAT ? "nat" : "bridged",
		       net_is_active(d) == 1 ? "active" : "stopped", detail, d->mtu);
	}
	return 0;
}

static int cmd_show(const char *name)
{
	struct netdef d;
	json_object *o;

	if (net_lookup(name, &d) < 0)
		return 1;
	o = network_json(&d);
	if (!o)
		return 1;
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return 0;
}

static int cmd_net(int argc, char **argv)
{
	const char *verb = argc > 0 ? argv[0] : "";
	struct netdef d;
	char *text;
	int ret;

	if (strcmp(verb, "define") == 0 && argc == 2) {
		if (!(text = read_definition(argv[1])))
			return 1;
		ret = net_define(text, &d);
		free(text);
		if (ret == 0)
			printf("network %s defined\n", d.name);
		return ret < 0;
	}
	if (strcmp(verb, "undefine") == 0 && argc == 2)
		return net_delete(argv[1]) < 0;
	if (strcmp(verb, "start") == 0 && argc == 2)
		return net_start(argv[1]) < 0;
	if (strcmp(verb, "stop") == 0 && argc == 2)
		return net_stop(argv[1], false) < 0;
	if (strcmp(verb, "stop") == 0 && argc == 3 && strcmp(argv[1], "--force") == 0)
		return net_stop(argv[2], true) < 0;
	if (strcmp(verb, "list") == 0 && argc == 1)
		return cmd_list(false);
	if (strcmp(verb, "list") == 0 && argc == 2 && strcmp(argv[1], "--json") == 0)
		return cmd_list(true);
	if (strcmp(verb, "show") == 0 && argc == 2)
		return cmd_show(argv[1]);
	return usage();
}

int main(int argc, char **argv)
{
	log_init_from_env();
	if (argc >= 2 && strcmp(argv[1], "net") == 0)
		return cmd_net(argc - 2, argv + 2);
	return usage();
}
