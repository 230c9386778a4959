#!/bin/bash
# Print the module files needed to load the named modules, dependencies first, one path per
# line relative to lib/modules/<kver>/ — the order insmod must follow. Uses the modules.dep
# made by scripts/fetch-kernel.sh. Names may use - or _ (kernel module names treat them alike).
#   usage: scripts/modclosure.sh KROOT MODULE...      (KROOT: the unpacked package root)
set -euo pipefail
KROOT=$1; shift
kv=$(ls "$KROOT/lib/modules" | head -1)
dep="$KROOT/lib/modules/$kv/modules.dep"
[ -f "$dep" ] || { echo "modclosure: $dep missing (run scripts/fetch-kernel.sh)" >&2; exit 1; }
awk -v want="$*" '
function norm(n) { sub(/.*\//, "", n); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", n); gsub(/-/, "_", n); return n }
function visit(p,   i, n, d) {
	if (p in seen) return
	seen[p] = 1
	n = split(deps[p], d, " ")
	for (i = 1; i <= n; i++) visit(d[i])
	print p
}
{ f = $1; sub(/:$/, "", f); path[norm(f)] = f; $1 = ""; deps[f] = $0 }
END {
	n = split(want, w, " ")
	for (i = 1; i <= n; i++) {
		m = w[i]; gsub(/-/, "_", m)
		if (!(m in path)) { print "modclosure: no module " w[i] > "/dev/stderr"; bad = 1; continue }
		visit(path[m])
	}
	exit bad
}' "$dep"
