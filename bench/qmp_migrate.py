#!/usr/bin/env python3
"""Drive one QEMU live migration over QMP and print its figures as one line of key=value.

usage: qmp_migrate.py SOURCE_QMP_SOCK DEST_QMP_SOCK URI MODE
MODE: default  (QEMU's own defaults)
      best     (max-bandwidth raised to 10 GiB/s, multifd with 4 channels + zstd on both sides)
Prints: status total_ms downtime_ms setup_ms bytes rounds (dirty-sync-count).
QMP_MIGRATE_TIMEOUT (s, default 600): past it the migration is cancelled and reported as
status=timeout (QEMU's defaults have no auto-converge: a guest dirtying faster than the
link never finishes)."""
import json, os, socket, sys, time

def qmp(path):
    s = socket.socket(socket.AF_UNIX); s.connect(path)
    f = s.makefile("rw")
    json.loads(f.readline())
    def cmd(name, **args):
        f.write(json.dumps({"execute": name, "arguments": args}) + "\n"); f.flush()
        while True:
            r = json.loads(f.readline())
            if "return" in r or "error" in r:
                if "error" in r:
                    raise SystemExit(f"{name}: {r['error']}")
                return r["return"]
    cmd("qmp_capabilities")
    return cmd

src, dst, uri, mode = sys.argv[1:5]
s, d = qmp(src), qmp(dst)
if mode == "best":
    for q in (s, d):
        q("migrate-set-capabilities", capabilities=[{"capability": "multifd", "state": True}])
        q("migrate-set-parameters", **{"multifd-channels": 4, "multifd-compression": "zstd"})
    s("migrate-set-parameters", **{"max-bandwidth": 10 << 30})
d("migrate-incoming", uri=uri)
s("migrate", uri=uri)
t0 = time.time()
end = t0 + float(os.environ.get("QMP_MIGRATE_TIMEOUT", "600"))
while True:
    r = s("query-migrate")
    st = r.get("status")
    if st in ("completed", "failed", "cancelled"):
        break
    if time.time() > end:
        s("migrate_cancel")
        st = "timeout"
        r.setdefault("total-time", int((time.time() - t0) * 1000))
        break
    time.sleep(0.1)
ram = r.get("ram", {})
print(f"status={st} total_ms={r.get('total-time', -1)} downtime_ms={r.get('downtime', -1)} "
      f"setup_ms={r.get('setup-time', -1)} bytes={ram.get('transferred', -1)} "
      f"rounds={ram.get('dirty-sync-count', -1)}")
