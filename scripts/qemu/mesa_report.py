#!/usr/bin/env python3
"""The host side of scripts/qemu-ci.sh --mesa: Mesa's virtio backend vs Mesa's msm backend on fdnc.

    mesa_report.py SERIAL_LOG MARKS SHIM_LOG [TABLE_OUT]

SERIAL_LOG is the guest console: its FDNC-MESA-RESULT lines (one per run, made in the guest),
FDNC-MESA-JSON lines (fdnc-glframes' --json, one line) and FDNC-RTT line (scripts/qemu/rtt_probe.c).
MARKS holds "RUN N BYTES" lines written by qemu-ci.sh while the guest ran: at each
"FDNC-IOCTL-MARK RUN N" of the guest (0 = the run starts, 1 = warm-up done, 2 = last measured frame
done, 3 = the run ended) the length of SHIM_LOG, the host kernel model's log
(FDNC_SHIM_LOG of the QEMU process: one line per msm ioctl that virglrenderer made). The host's
GEM_NEW / SET_IOVA / SUBMIT / WAIT_FENCE / CPU_PREP counts between marks 1 and 2 are divided by the
measured frames. Prints one FDNC-MESA-HOST line per run and the side-by-side table (markdown; also
written to TABLE_OUT). Exit 0 when every run (c-virtio, c-fdnc) printed a passing FDNC-MESA-RESULT
line, 1 otherwise.
"""
import json
import re
import sys

RUNS = ("c-virtio", "c-fdnc")


def host_counts(log, start, end):
    """msm ioctls of the kernel model between two byte offsets of its log: {name: n} (successes)."""
    c = {}
    with open(log, "rb") as f:
        f.seek(start)
        data = f.read(max(0, end - start)).decode(errors="replace")
    for line in data.splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] != "0":
            continue
        name = parts[0]
        if name == "MSM_GEM_INFO":
            kv = dict(x.split("=", 1) for x in (parts[2] if len(parts) > 2 else "").split() if "=" in x)
            info = kv.get("info", "?")
            if info == "SET_IOVA" and kv.get("value", "0x0") in ("0", "0x0"):
                info = "SET_IOVA_0"
            name = "MSM_GEM_INFO." + info
        c[name] = c.get(name, 0) + 1
        c["all"] = c.get("all", 0) + 1
    return c


def faults_at(log, offset):
    """The kernel model's fault count (MSM_PARAM_FAULTS, one count per host) as last read before offset."""
    last = 0
    with open(log, "rb") as f:
        data = f.read(offset).decode(errors="replace")
    for m in re.finditer(r"^MSM_GET_PARAM\t0\tparam=FAULTS value=(0x[0-9a-f]+)", data, re.M):
        last = int(m.group(1), 16)
    return last


def main():
    serial, marks_path, shim_log = sys.argv[1:4]
    table_out = sys.argv[4] if len(sys.argv) > 4 else None
    results, jsons, rtt = {}, {}, None
    for raw in open(serial, errors="replace"):
        line = raw.rstrip("\r\n")
        if line.startswith("FDNC-MESA-RESULT:"):
            m = re.search(r"run=(\S+)", line)
            if m:
                results[m.group(1)] = line
        elif line.startswith("FDNC-MESA-JSON "):
            _, run, rest = line.split(" ", 2)
            try:
                jsons[run] = json.loads(rest)
            except ValueError:
                jsons[run] = None
        elif line.startswith("FDNC-RTT:"):
            rtt = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    marks = {}
    try:
        for line in open(marks_path):
            p = line.split()
            if len(p) == 3:
                marks[(p[0], int(p[1]))] = int(p[2])
    except OSError:
        pass

    ok = True
    rows = []
    for run in RUNS:
        res = results.get(run)
        if not res:
            print(f"FDNC-MESA-HOST: run={run} missing: the guest printed no FDNC-MESA-RESULT line for it")
            ok = False
            continue
        if not res.startswith("FDNC-MESA-RESULT: pass"):
            ok = False
        j = jsons.get(run) or {}
        frames = max(1, int(j.get("frames") or 1))
        meas = j.get("device_stats_measured") or {}
        host = {}
        if (run, 1) in marks and (run, 2) in marks:
            host = host_counts(shim_log, marks[(run, 1)], marks[(run, 2)])
            whole = host_counts(shim_log, marks.get((run, 0), marks[(run, 1)]), marks.get((run, 3), marks[(run, 2)]))
            hfields = (f"host_gem_new_per_frame={host.get('MSM_GEM_NEW', 0) / frames:.2f} "
                       f"host_set_iova_per_frame={host.get('MSM_GEM_INFO.SET_IOVA', 0) / frames:.2f} "
                       f"host_submits_per_frame={host.get('MSM_GEM_SUBMIT', 0) / frames:.2f} "
                       f"host_wait_fence_per_frame={host.get('MSM_WAIT_FENCE', 0) / frames:.2f} "
                       f"host_cpu_prep_per_frame={host.get('MSM_GEM_CPU_PREP', 0) / frames:.2f} "
                       f"host_ioctls_per_frame={host.get('all', 0) / frames:.2f} "
                       f"run_host_gem_new={whole.get('MSM_GEM_NEW', 0)} run_host_set_iova={whole.get('MSM_GEM_INFO.SET_IOVA', 0)}")
        else:
            hfields = "host=no-marks (the host did not see the guest's FDNC-IOCTL-MARK lines)"
        print(f"FDNC-MESA-HOST: run={run} {hfields}")

        def per(k):
            return meas.get(k, 0) / frames

        fm = j.get("frame_ms") or {}
        # Requests that waited on the host, per frame. Guest kernel calls that block until the host
        # answered: a sync ccmd (EXECBUFFER with an out-fence on ring 0, then a poll of that fence),
        # an mmap of a host-visible blob (waits for RESOURCE_MAP_BLOB), VIRTGPU_WAIT; fdnc counts its
        # own (host_waits). Fence waits of glFinish are polls of a GPU submit's fence.
        rows.append({
            "run": run, "pass": res.startswith("FDNC-MESA-RESULT: pass"), "frames": j.get("frames"),
            "warmup": j.get("warmup"), "p50": fm.get("p50"), "p99": fm.get("p99"), "mean": fm.get("mean"),
            "bufs": per("bo_news") if run == "c-fdnc" else per("guest.RESOURCE_CREATE_BLOB"),
            "blob": per("guest.RESOURCE_CREATE_BLOB"), "sync": per("guest.EXECBUFFER.sync"),
            "mmap": per("guest.mmap.drm"), "wait": per("guest.WAIT"), "poll": per("guest.poll"),
            "poll_ms": per("guest.poll_us") / 1000, "mmap_ms": per("guest.mmap.drm_us") / 1000,
            "submit": per("guest.EXECBUFFER.submit"), "kernel": per("guest.kernel_total"),
            "fdnc_waits": per("host_waits") if run == "c-fdnc" else None,
            "bo_new_waits": (j.get("device_stats") or {}).get("bo_new_waits") if run == "c-fdnc" else None,
            "faults": (j.get("device_stats") or {}).get("faults") if run == "c-fdnc" else None,
            "host_gem_new": host.get("MSM_GEM_NEW", 0) / frames if host else None,
            "host_set_iova": host.get("MSM_GEM_INFO.SET_IOVA", 0) / frames if host else None,
            "host_ioctls": host.get("all", 0) / frames if host else None,
            "host_faults": (faults_at(shim_log, marks[(run, 3)]) - faults_at(shim_log, marks[(run, 0)]))
                           if (run, 0) in marks and (run, 3) in marks else None,
        })

    def f(v, d=2):
        return "-" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))

    out = []
    if rtt:
        out.append(f"Round trip (guest, rtt_probe, {rtt.get('n')} sync NOP ccmds): p50 {rtt.get('sync_p50_us')} µs, "
                   f"p99 {rtt.get('sync_p99_us')} µs, min {rtt.get('sync_min_us')} µs; an unfenced EXECBUFFER "
                   f"costs the caller p50 {rtt.get('async_p50_us')} µs. No latency injected.")
        out.append("")
    out.append("| run | frames | frame p50 ms | p99 ms | buffers created /frame | blob creates /frame | "
               "sync ccmds /frame | blob mmaps /frame | VIRTGPU_WAIT /frame | fence polls /frame (ms) | "
               "fdnc host waits /frame | bo_new host waits | guest kernel calls /frame | host GEM_NEW /frame | "
               "host SET_IOVA /frame | host msm ioctls /frame | faults (fdnc) | model faults in the run |")
    out.append("|" + "---|" * 18)
    for r in rows:
        out.append(f"| {r['run']} | {r['frames']} (+{r['warmup']}) | {f(r['p50'], 1)} | {f(r['p99'], 1)} | {f(r['bufs'])} | "
                   f"{f(r['blob'])} | {f(r['sync'])} | {f(r['mmap'])} | {f(r['wait'])} | {f(r['poll'])} ({f(r['poll_ms'], 1)}) | "
                   f"{f(r['fdnc_waits'])} | {f(r['bo_new_waits'])} | {f(r['kernel'])} | {f(r['host_gem_new'])} | "
                   f"{f(r['host_set_iova'])} | {f(r['host_ioctls'])} | {f(r['faults'])} | {f(r['host_faults'])} |")
    text = "\n".join(out)
    print("FDNC-MESA-TABLE:")
    print(text)
    if table_out:
        with open(table_out, "w") as fh:
            fh.write(text + "\n")
    print(f"FDNC-MESA-HOST: {'pass' if ok else 'FAIL'}: "
          + ", ".join(f"{r} {'pass' if results.get(r, '').startswith('FDNC-MESA-RESULT: pass') else 'fail/missing'}" for r in RUNS))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
