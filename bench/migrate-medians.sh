#!/bin/bash
# Medians per case and variant over the RESULT lines of bench/migrate-inner.sh (one file, from
# one test-host boot or several sharing one calibration).
#   usage: bench/migrate-medians.sh RESULTS-FILE "CASES"
set -uo pipefail
res=$1 cases=$2
median() { sort -n | awk '{a[NR] = $1} END {if (!NR) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
echo "## medians (total_ms / downtime_ms / MiB on the wire / rounds)"
for c in $cases; do
	for v in ours-z0 ours-z1 qemu-default qemu-best; do
		l=$(grep "case=$c variant=$v " "$res" | grep "status=completed")
		n=$(grep -c . <<<"$l")
		[ -z "$l" ] && { echo "MEDIAN case=$c variant=$v: no completed run ($(grep -c "case=$c variant=$v " "$res") tried)"; continue; }
		f() { grep -o "$1=[0-9.]*" <<<"$l" | cut -d= -f2 | median; }
		echo "MEDIAN case=$c variant=$v runs=$n total_ms=$(f total_ms) downtime_ms=$(f downtime_ms) MiB=$(awk "BEGIN{print $(f bytes)/1048576}") rounds=$(f rounds)"
	done
done
