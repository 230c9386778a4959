/* SPDX-License-Identifier: MIT */
/* net/netstore.c: network definitions on disk (one JSON file each), define/lookup/undefine/list. */
#define LOG_TAG "netstore"
#include "net/netstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/rundir.h"
#include "vmm/lib/log.h"

int net_store_dir(char *buf, size_t len)
{
	const char *base = getenv("VMCTL_STATE_DIR");
	int n = snprintf(buf, len, "%s/networks", base && *base ? base : "/var/lib/vmctl");

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int def_path(const char *name, char *buf, size_t len)
{
	char dir[4096];
	int n;

	if (net_store_dir(dir, sizeof(dir)))
		return -ENAMETOOLONG;
	n = snprintf(buf, len, "%s/%s.json", dir, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int read_file(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long sz;

	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END) || (sz = ftell(f)) < 0 || sz > 65536 || fseek(f, 0, SEEK_SET)) {
		fclose(f);
		return -EFBIG;
	}
	buf = calloc(1, sz + 1);
	if (!buf || fread(buf, 1, sz, f) != (size_t)sz) {
		free(buf);
		fclose(f);
		return -EIO;
	}
	fclose(f);
	*out = buf;
	return 0;
}

int net_lookup(const char *name, struct netdef *out)
{
	char path[4200], *text;
	int ret;

	if (strchr(name, '/') || def_path(name, path, sizeof(path)))
		return -EINVAL;
	ret = read_file(path, &text);
	if (ret) {
		if (ret == -ENOENT)
			log_err("no network named '%s'", name);
		else
			log_err("network %s: reading %s: %s", name, path, strerror(-ret));
		return ret;
	}
	ret = netdef_from_json(text, out);
	free(text);
	return ret;
}

int net_list(struct netdef *defs, size_t max)
{
	char dir[4096], path[4400], *text;
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	if (net_store_dir(dir, sizeof(dir)))
		return -ENAMETOOLONG;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) && n < max) {
		size_t l = strlen(de->d_name);

		if (l < 6 || strcmp(de->d_name + l - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (read_file(path, &text))
			continue;
		if (netdef_from_json(text, &defs[n]) == 0)
			n++;
		free(text);
	}
	closedir(d);
	return n;
}

int net_define(const char *json, struct netdef *out)
{
	char dir[4096], path[4200], tmp[4300], *text = NULL;
	struct netdef d, all[256];
	int ret, n, fd;
	size_t len;

	ret = netdef_from_json(json, &d);
	if (ret)
		return ret;
	n = net_list(all, 256);
	if (n < 0) {
		log_err("network %s: listing stored networks: %s", d.name, strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++) {
		if (!strcmp(all[i].name, d.name)) {
			log_err("network %s already exists", d.name);
			return -EEXIST;
		}
		if (netdef_subnets_overlap(&all[i], &d)) {
			log_err("network %s: subnet overlaps network %s", d.name, all[i].name);
			return -EADDRINUSE;
		}
	}
	net_store_dir(dir, sizeof(dir));
	def_path(d.name, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	/* the state directory too: a fresh host has no /var/lib/vmctl yet */
	ret = net_mkdir_p(dir, 0755);
	if (ret < 0)
		return ret;
	text = netdef_to_json(&d);
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		log_err("network %s: creating %s: %s", d.name, tmp, strerror(errno));
		goto out;
	}
	if (write(fd, text, len) != (ssize_t)len || fsync(fd)) {
		ret = -EIO;
		log_err("network %s: writing %s failed", d.name, tmp);
		close(fd);
		goto unlink_tmp;
	}
	close(fd);
	/* link() rather than rename(): fails with EEXIST if a concurrent define won the race. */
	if (link(tmp, path)) {
		ret = -errno;
		log_err("network %s: %s: %s", d.name, path, strerror(errno));
		goto unlink_tmp;
	}
	ret = 0;
	if (out)
		*out = d;
unlink_tmp:
	unlink(tmp);
out:
	free(text);
	return ret;
}

int net_undefine(const char *name)
{
	char path[4200];

	if (strchr(name, '/') || def_path(name, path, sizeof(path)))
		return -EINVAL;
	if (unlink(path)) {
		int ret = -errno;

		log_err("network %s: %s", name, ret == -ENOENT ? "no such network" : strerror(-ret));
		return ret;
	}
	return 0;
}
