#!/usr/bin/env python3
"""The realhost differential suite: the same client scenarios on fdnc-hostsim (the model host)
and on the real virglrenderer 1.3 vtest server (its msm renderer over the drm_shim's model
kernel), for each kernel era. It compares what a client and the kernel log can observe:

  exit status, GPU faults and async errors (fdnc-replay's JSON), kernel calls by kind on the
  client's drm file, failing kernel calls, and the server's fd count back at idle.

The real host is the judge: a scenario fails when it fails there, and a difference between the
two hosts is a failure unless it is listed in KNOWN_DIFFERENCES with its reason (and in the
README's list of fdnc-only behaviour). Each host serves one client at a time, as
`virgl_test_server --no-fork` does.

Exit status: 0 every scenario passed on both hosts and they agree, 1 otherwise, 2 set-up error.
"""
import argparse
import collections
import json
import re
import os
import signal
import subprocess
import sys
import tempfile
import time

# Kinds whose counts are compared. OPEN/CLOSE/DUP/VERSION/SET_CLIENT_NAME/MUNMAP are the
# interception layer's own events (the model host has no drm fd), so they are not.
COMPARED_PREFIXES = ("MSM_", "GEM_CLOSE", "PRIME_", "MMAP")

# The real renderer's own init probes (msm_renderer_probe, drm_renderer_init; PROTOCOL.md §12.1)
# run on a drm file of their own, before any client context. Failing calls allowed there:
PROBE_FAILURES_ALLOWED = {
    "GET_UNIQUE",           # a render node refuses it (-EACCES)
    "MSM_GEM_NEW",          # the CACHED_COHERENT probe, where the GPU lacks it
    "MSM_SUBMITQUEUE_NEW",  # the preemption probe (ALLOW_PREEMPT) on a GPU without preemption
}

# Known, explained differences between the model host and the real one (kind -> reason). Empty
# means the model matches the real host on every compared kind.
KNOWN_DIFFERENCES = {}

# Counts that depend on timing, not on the stream, reported but not compared: both hosts read
# MSM_PARAM_FAULTS once per fence-retire wake-up (shmem.global_faults, F6); how many fences one
# wake-up retires, and whether the last one is seen before the client leaves, is scheduling.
TIMING_DEPENDENT = {"MSM_GET_PARAM:FAULTS"}


def log(msg):
    print(msg, flush=True)


class LogSlice:
    """The lines a log file gained since mark()."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def mark(self):
        self.offset = os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def lines(self):
        if not os.path.exists(self.path):
            return []
        with open(self.path, "r", errors="replace") as f:
            f.seek(self.offset)
            return [l.rstrip("\n") for l in f if l.strip()]


def parse_line(line):
    parts = line.split("\t")
    if len(parts) < 2:
        return None
    fields = {}
    for tok in (parts[2] if len(parts) > 2 else "").split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            fields[k] = v
    return parts[0], parts[1], fields


def kind_of(name, fields):
    if name == "MSM_GET_PARAM":
        return "MSM_GET_PARAM:" + fields.get("param", "?")
    if name == "MSM_GEM_INFO":
        info = fields.get("info", "?")
        if info == "SET_IOVA":
            return "MSM_GEM_INFO:SET_IOVA(0)" if int(fields.get("value", "0"), 0) == 0 else "MSM_GEM_INFO:SET_IOVA"
        return "MSM_GEM_INFO:" + info
    return name


class KernelView:
    """Kernel calls of one scenario, split into the client's context files and probe files."""

    def __init__(self):
        self.calls = collections.Counter()
        self.failures = collections.Counter()
        self.probe_failures = collections.Counter()


def view_from_shim_log(lines):
    """drm_shim log: lines carry fd=N; OPEN (file=F fd=N) and DUP (oldfd fd) tie fds to files; a
    context file is one the renderer named with SET_CLIENT_NAME (drm_renderer_create)."""
    fd_file = {}
    per_file = collections.defaultdict(list)
    named = set()
    for line in lines:
        p = parse_line(line)
        if not p:
            continue
        name, result, f = p
        if name == "OPEN" and "file" in f and "fd" in f:
            fd_file[f["fd"]] = f["file"]
            continue
        if name == "DUP" and f.get("oldfd") in fd_file:
            fd_file[f["fd"]] = fd_file[f["oldfd"]]
            continue
        file = f.get("file") if name == "CLOSE" else fd_file.get(f.get("fd"))
        if file is None:
            continue
        if name == "SET_CLIENT_NAME":
            named.add(file)
        per_file[file].append((name, result, f))
    v = KernelView()
    for file, calls in per_file.items():
        for name, result, f in calls:
            if not name.startswith(COMPARED_PREFIXES) and name != "GET_UNIQUE":
                continue
            if file in named:
                if name.startswith(COMPARED_PREFIXES):
                    v.calls[kind_of(name, f)] += 1
                if result != "0":
                    v.failures[kind_of(name, f) + " " + result] += 1
            elif result != "0":
                v.probe_failures[name + " " + result] += 1
    return v


def view_from_model_log(lines):
    """fdnc-hostsim --kernel-log: every line carries file=F; every file opened during the
    scenario is the client's context (the model renderer probes once, at start-up)."""
    v = KernelView()
    for line in lines:
        p = parse_line(line)
        if not p:
            continue
        name, result, f = p
        if not name.startswith(COMPARED_PREFIXES):
            continue
        v.calls[kind_of(name, f)] += 1
        if result != "0":
            v.failures[kind_of(name, f) + " " + result] += 1
    return v


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def wait_fd_count(pid, want, timeout=5.0):
    """The server's fd count once it is back at `want`, or the last count after `timeout`."""
    end = time.monotonic() + timeout
    n = fd_count(pid)
    while n != want and time.monotonic() < end:
        time.sleep(0.02)
        n = fd_count(pid)
    return n


def tail_of(path, n):
    try:
        with open(path, errors="replace") as f:
            return [l.rstrip("\n") for l in f.readlines()[-n:]]
    except OSError as e:
        return [f"({path}: {e})"]


class Server:
    def __init__(self, kind, pid, socket, kernel_log, server_log, proc=None):
        self.kind, self.pid, self.socket, self.kernel_log, self.proc = kind, pid, socket, kernel_log, proc
        self.server_log = server_log
        self.idle_fds = -1

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s. The real server is not our child (start-server.sh
        started it and left), so its end is seen as its /proc entry going away."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except OSError:
            pass
        if self.proc:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            return
        end = time.monotonic() + 5
        while os.path.exists(f"/proc/{self.pid}") and time.monotonic() < end:
            time.sleep(0.05)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass


def wait_socket(path, proc=None, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        if proc and proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def start_hostsim(a, era, tmp, gpu_us, n=0):
    sock = os.path.join(tmp, f"hostsim-{era}-{gpu_us}-{n}.sock")
    klog = os.path.join(tmp, f"hostsim-{era}-{gpu_us}-{n}.kernel.log")
    slog = os.path.join(tmp, f"hostsim-{era}-{gpu_us}-{n}.stderr")
    err = open(slog, "w")
    proc = subprocess.Popen([a.hostsim, "--socket", sock, "--era", era, "--gpu-us", str(gpu_us), "--kernel-log", klog],
                            stdout=subprocess.DEVNULL, stderr=err)
    if not wait_socket(sock, proc):
        raise RuntimeError(f"fdnc-hostsim --era {era} did not start (see {err.name})")
    return Server("hostsim", proc.pid, sock, klog, slog, proc)


def start_real(a, era, tmp, gpu_us, n=0):
    sock = os.path.join(tmp, f"real-{era}-{gpu_us}-{n}.sock")
    klog = os.path.join(tmp, f"real-{era}-{gpu_us}-{n}.shim.log")
    slog = os.path.join(tmp, f"real-{era}-{gpu_us}-{n}.server.log")
    env = dict(os.environ, FDNC_VIRGL_TEST_SERVER=a.server)
    cmd = ["bash", a.start_server, "--socket", sock, "--era", era, "--log", klog, "--server-log", slog,
           "--shim", a.shim, "--fence-delay-us", str(gpu_us)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"start-server.sh failed: {r.stderr.strip()}")
    pid = int(r.stdout.strip().splitlines()[-1])
    return Server("real", pid, sock, klog, slog)


def settle(a, hosts):
    """A first client opens whatever a server opens lazily (the shim's log); the fd count after it
    has left is the idle count every later client must return to."""
    for h in hosts:
        run_client([a.info, "vtest:" + h.socket], timeout=60)
        time.sleep(0.2)
        h.idle_fds = fd_count(h.pid)


def death_report_check(a, tmp):
    """The suite's own diagnosis must work: a real server killed by SIGABRT (which dumps core, like
    the SIGSEGV that killed it in a renderer thread twice before anyone could say where) must leave
    'killed by signal 6' and the dead thread's backtrace in its log. Problems, [] when it does."""
    h = start_real(a, "classic", tmp, 0, "death")
    run_client([a.info, "vtest:" + h.socket], timeout=60)
    os.kill(h.pid, signal.SIGABRT)
    end = time.monotonic() + 60
    text = ""
    while time.monotonic() < end and "start-server: virgl_test_server " not in text:
        time.sleep(0.1)
        text = "\n".join(tail_of(h.server_log, 200))
    h.stop()
    problems = []
    if "killed by signal 6 (ABRT)" not in text:
        problems.append("no 'killed by signal 6 (ABRT)' line in the server log")
    try:
        with open("/proc/sys/kernel/core_pattern") as f:
            pattern = f.read().strip()
    except OSError:
        pattern = ""
    if pattern.startswith("|"):  # cores go to a program (systemd-coredump, apport): none to read
        log(f"         (no backtrace on this machine: core_pattern is '{pattern}')")
    elif not re.search(r"^  #\d+ .* in vtest_server_run \(", text, re.M):
        problems.append("no backtrace through vtest_server_run in the server log")
    if problems:
        problems += ["  " + l for l in tail_of(h.server_log, 15)]
    return problems


def run_client(cmd, env=None, timeout=300):
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out, err = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", e.stdout or "", e.stderr or ""
    return rc, out if isinstance(out, str) else out.decode(errors="replace"), \
        err if isinstance(err, str) else err.decode(errors="replace"), time.monotonic() - t0


def scenarios(a, slow):
    """(name, function(socket) -> (rc, observed dict, stderr tail))."""
    out = []

    def replay(args, label):
        def run(sock, tmp):
            js = os.path.join(tmp, "replay.json")
            if os.path.exists(js):
                os.unlink(js)
            rc, _, err, secs = run_client([a.replay, "--uri", "vtest:" + sock, "--iova", "guest", "-q", "--json", js] + args)
            obs = {}
            if os.path.exists(js):
                with open(js) as f:
                    j = json.load(f)
                m = j.get("modes", {}).get("guest", {})
                obs = {"faults": m.get("faults"), "async_errors": m.get("async_errors"),
                       "buffers": m.get("buffers"), "submits": m.get("submits"),
                       "placement": j.get("placement")}
            return rc, obs, err, secs
        out.append((label, run))

    if slow:
        def kick(sock, tmp):
            env = dict(os.environ, FDNC_VTEST_SOCKET=sock)
            rc, _, err, secs = run_client([a.transports, "[slowgpu]"], env=env)
            return rc, {}, err, secs
        out.append(("fd_bo slow-GPU stall kick", kick))
        return out

    def info(sock, tmp):
        rc, o, err, secs = run_client([a.info, "vtest:" + sock, "--json"])
        usable = None
        try:
            usable = json.loads(o).get("usable")
        except ValueError:
            pass
        return rc, {"usable": usable}, err, secs
    out.append(("fdnc-info", info))

    def capi(sock, tmp):
        rc, _, err, secs = run_client([a.c_api, "vtest:" + sock])
        return rc, {}, err, secs
    out.append(("C API round trip", capi))

    def fdbo(sock, tmp):
        env = dict(os.environ, FDNC_VTEST_SOCKET=sock)
        rc, _, err, secs = run_client([a.transports, "the fd_bo client runs a bo_new/submit/wait/free scenario over vtest"], env=env)
        return rc, {}, err, secs
    out.append(("fd_bo scenario", fdbo))

    for w in ("gl-frames", "compute", "alloc-storm"):
        replay(["-w", w], "replay " + w)
    for t in sorted(os.listdir(a.traces)) if os.path.isdir(a.traces) else []:
        if t.endswith((".rd", ".rd.gz")):
            replay(["--rd", os.path.join(a.traces, t)], "replay " + t)
    return out


def diff_views(hv, rv):
    diffs = []
    for k in sorted(set(hv.calls) | set(rv.calls)):
        if k in TIMING_DEPENDENT:
            continue
        if hv.calls[k] != rv.calls[k] and k not in KNOWN_DIFFERENCES:
            diffs.append(f"{k}: hostsim {hv.calls[k]}, real {rv.calls[k]}")
    for k in sorted(set(hv.failures) | set(rv.failures)):
        diffs.append(f"failing {k}: hostsim {hv.failures[k]}, real {rv.failures[k]}")
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hostsim", required=True)
    ap.add_argument("--replay", required=True)
    ap.add_argument("--info", required=True)
    ap.add_argument("--c-api", required=True)
    ap.add_argument("--transports", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--start-server", required=True)
    ap.add_argument("--build-server", required=True, help="scripts/realhost/build-virglrenderer.sh")
    ap.add_argument("--traces", required=True)
    ap.add_argument("--eras", default="classic,novma,vmbind")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()

    a.server = os.environ.get("FDNC_VIRGL_TEST_SERVER", "")
    if not a.server:
        r = subprocess.run(["bash", a.build_server], capture_output=True, text=True)
        if r.returncode != 0:
            log("realhost: building virglrenderer failed:\n" + r.stderr[-4000:])
            return 2
        a.server = r.stdout.strip().splitlines()[-1]
    if not os.access(a.server, os.X_OK):
        log(f"realhost: no virgl_test_server at {a.server}")
        return 2

    results = []
    failed = 0
    restarts = 0
    runs = [(era, 0, False) for era in a.eras.split(",")] + [("classic", 300000, True)]
    with tempfile.TemporaryDirectory(prefix="fdnc-realhost-") as tmp:
        for era, gpu_us, slow in runs:
            try:
                hosts = [start_hostsim(a, era, tmp, gpu_us), start_real(a, era, tmp, gpu_us)]
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                log(f"realhost: {e}")
                return 2
            try:
                settle(a, hosts)
                log(f"== era {era}" + (f", {gpu_us} us GPU time per submit" if gpu_us else "") +
                    f" (idle fds: hostsim {hosts[0].idle_fds}, real {hosts[1].idle_fds})")
                for label, run in scenarios(a, slow):
                    if any(fd_count(h.pid) < 0 for h in hosts):
                        # A host died in the scenario before (it failed there, with the host's
                        # last words): the next scenarios get fresh hosts, so one death fails one
                        # scenario instead of every later one.
                        for h in hosts:
                            h.stop()
                        restarts += 1
                        try:
                            hosts = [start_hostsim(a, era, tmp, gpu_us, restarts),
                                     start_real(a, era, tmp, gpu_us, restarts)]
                        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                            log(f"realhost: restarting the hosts: {e}")
                            return 2
                        settle(a, hosts)
                        log(f"   (hosts restarted; idle fds: hostsim {hosts[0].idle_fds}, real {hosts[1].idle_fds})")
                    obs = {}
                    for h in hosts:
                        sl = LogSlice(h.kernel_log)
                        sl.mark()
                        rc, o, err, secs = run(h.socket, tmp)
                        fds = wait_fd_count(h.pid, h.idle_fds)
                        time.sleep(0.05)  # the server's teardown lines land in the log
                        lines = sl.lines()
                        view = view_from_model_log(lines) if h.kind == "hostsim" else view_from_shim_log(lines)
                        obs[h.kind] = {"rc": rc, "obs": o, "fds": fds, "view": view, "err": err, "secs": secs}
                    problems = []
                    for kind, ob in obs.items():
                        if ob["rc"] != 0:
                            problems.append(f"{kind}: exit {ob['rc']}: " + " | ".join(ob["err"].strip().splitlines()[-3:]))
                        for k in ("faults", "async_errors"):
                            if ob["obs"].get(k):
                                problems.append(f"{kind}: {k} {ob['obs'][k]}")
                        if ob["obs"].get("usable") is False:
                            problems.append(f"{kind}: fdnc-info says not usable")
                        idle = hosts[0].idle_fds if kind == "hostsim" else hosts[1].idle_fds
                        if ob["fds"] != idle:
                            problems.append(f"{kind}: fd count {ob['fds']} after the client left, idle {idle}")
                        if ob["fds"] < 0:  # the server is gone: say what it said last
                            h = hosts[0] if kind == "hostsim" else hosts[1]
                            if kind == "real":  # start-server.sh's watcher appends how it ended
                                end = time.monotonic() + 60  # reading a core with gdb takes seconds
                                while time.monotonic() < end and "start-server: virgl_test_server " not in \
                                        "".join(tail_of(h.server_log, 200)):
                                    time.sleep(0.1)
                            problems.append(f"{kind}: the server died; its last words:")
                            # 40 lines: the log's end, and the dead thread's backtrace when a core
                            # was left (start-server.sh).
                            problems += ["  " + l for l in tail_of(h.server_log, 40)]
                    for k, n in obs["real"]["view"].probe_failures.items():
                        if k.split()[0] not in PROBE_FAILURES_ALLOWED:
                            problems.append(f"real: failing probe call {k} x{n}")
                    if obs["hostsim"]["rc"] != obs["real"]["rc"]:
                        problems.append(f"exit status differs: hostsim {obs['hostsim']['rc']}, real {obs['real']['rc']}")
                    for k in ("faults", "async_errors", "buffers", "submits", "placement", "usable"):
                        hv, rv = obs["hostsim"]["obs"].get(k), obs["real"]["obs"].get(k)
                        if hv != rv:
                            problems.append(f"{k} differs: hostsim {hv}, real {rv}")
                    problems += diff_views(obs["hostsim"]["view"], obs["real"]["view"])
                    calls = sum(obs["real"]["view"].calls.values())
                    status = "ok" if not problems else "FAIL"
                    failed += bool(problems)
                    log(f"  [{status:4}] {label:34} real: {calls:6} kernel calls, "
                        f"{obs['real']['secs']:.1f} s; hostsim {obs['hostsim']['secs']:.1f} s")
                    for p in problems:
                        log("         " + p)
                    results.append({"era": era, "gpu_us": gpu_us, "scenario": label, "ok": not problems,
                                    "problems": problems,
                                    "kernel_calls": {k: {"hostsim": obs["hostsim"]["view"].calls[k],
                                                         "real": obs["real"]["view"].calls[k]}
                                                     for k in sorted(set(obs["hostsim"]["view"].calls) |
                                                                     set(obs["real"]["view"].calls))},
                                    "real_probe_failures": dict(obs["real"]["view"].probe_failures)})
            finally:
                for h in hosts:
                    h.stop()
        log("== the suite's own diagnosis")
        try:
            problems = death_report_check(a, tmp)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
            problems = [f"starting the server: {e}"]
        log(f"  [{'ok' if not problems else 'FAIL':4}] a server that dies leaves its backtrace in the report")
        for p in problems:
            log("         " + p)
        failed += bool(problems)
        results.append({"era": "classic", "gpu_us": 0, "scenario": "death report", "ok": not problems,
                        "problems": problems})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    passed = len(results) - failed
    log(f"realhost: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
