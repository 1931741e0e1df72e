#!/usr/bin/env python3
"""Stage fdnc's test binaries and tools into a guest root for scripts/qemu-ci.sh.

Reads `meson introspect --tests` and `--targets` of the build dir, copies every registered test
executable (stripped of debug info), the fdnc tools, their shared libraries (found through ldd,
the dynamic loader included) and ../shared/traces into the root, rewriting host paths under the
checkout's parent directory to /fdnc/... (e.g. /work/main/build -> /fdnc/main/build), and writes
the guest's run lists:
  fdnc/tests.sh        one `fdnc_test` line per registered test outside the 'guest' suite
  fdnc/guest-tests.sh  the same for suite 'guest' (they run after fdnc-info, see init.sh)
  fdnc/tools.env       FDNC_INFO / FDNC_HOSTSIM / FDNC_REPLAY / FDNC_CAPI_TEST guest paths ("" when
                       not built)
"""
import json
import os
import shlex
import shutil
import subprocess
import sys

GUEST_BASE = "/fdnc"
TOOLS = {"fdnc-info": "FDNC_INFO", "fdnc-hostsim": "FDNC_HOSTSIM", "fdnc-replay": "FDNC_REPLAY",
         "c_api_test": "FDNC_CAPI_TEST"}


class Stager:
    def __init__(self, src_root, build_dir, root):
        self.src_root = os.path.realpath(src_root)
        self.build_dir = os.path.realpath(build_dir)
        self.host_base = os.path.dirname(self.src_root)
        self.root = root
        self.elves = []
        self.copied = set()

    def guest_path(self, host):
        rel = os.path.relpath(os.path.realpath(host), self.host_base)
        if rel.startswith(".."):
            return host
        return GUEST_BASE + "/" + rel

    def _dest(self, guest):
        return os.path.join(self.root, guest.lstrip("/"))

    def copy_file(self, host, guest=None, elf=False):
        guest = guest or self.guest_path(host)
        if guest in self.copied:
            return guest
        dest = self._dest(guest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(os.path.realpath(host), dest)
        if elf:
            # Debug info only bloats the initramfs; symbols stay for backtraces.
            subprocess.run(["strip", "--strip-debug", dest], check=False)
            self.elves.append(host)
        self.copied.add(guest)
        return guest

    def map_value(self, value):
        """Rewrite host paths in an argument or env value (':'-separated lists too), copying them."""
        parts = value.split(":")
        out = []
        for p in parts:
            if os.path.isabs(p) and os.path.exists(p) and \
                    os.path.realpath(p).startswith(self.host_base + os.sep):
                real = os.path.realpath(p)
                if os.path.isdir(real):
                    if real in (self.src_root, self.host_base) or real == self.build_dir or \
                            real.startswith(self.build_dir + os.sep):
                        os.makedirs(self._dest(self.guest_path(real)), exist_ok=True)
                    elif self.guest_path(real) not in self.copied:
                        shutil.copytree(real, self._dest(self.guest_path(real)), dirs_exist_ok=True)
                        self.copied.add(self.guest_path(real))
                else:
                    self.copy_file(real, elf=os.access(real, os.X_OK) and is_elf(real))
                out.append(self.guest_path(real))
            else:
                out.append(p)
        return ":".join(out)

    def copy_libraries(self):
        seen = set()
        for elf in list(self.elves):
            res = subprocess.run(["ldd", elf], capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"stage.py: ldd {elf} failed: {res.stderr.strip() or res.stdout.strip()}")
            for line in res.stdout.splitlines():
                line = line.strip()
                if "=>" in line:
                    path = line.split("=>", 1)[1].split("(")[0].strip()
                    if path == "not found" or not path:
                        sys.exit(f"stage.py: {elf}: a shared library is not found: {line}")
                elif line.startswith("/"):
                    path = line.split("(")[0].strip()  # the dynamic loader
                else:
                    continue  # linux-vdso
                if path and path not in seen:
                    seen.add(path)
                    # Keep the soname the loader asks for; build-tree libraries move with the
                    # build dir (meson's RUNPATHs are $ORIGIN-relative).
                    where = os.path.dirname(path)
                    if os.path.realpath(where).startswith(self.host_base + os.sep):
                        where = self.guest_path(where)
                    dest = self._dest(os.path.join(where, os.path.basename(path)))
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    shutil.copy2(os.path.realpath(path), dest)
        return sorted(seen)


def load_should_fail(build_dir):
    """{test name: should_fail}. `meson introspect --tests` (1.0) omits should_fail, so read meson's
    own test setup; this needs meson's interpreter (qemu-ci.sh runs this script with it)."""
    try:
        import pickle
        import mesonbuild  # noqa: F401  (the pickle's classes)
        with open(os.path.join(build_dir, "meson-private", "meson_test_setup.dat"), "rb") as f:
            return {t.name: bool(t.should_fail) for t in pickle.load(f)}
    except Exception as e:  # noqa: BLE001
        print(f"stage.py: warning: cannot read should_fail ({e}); tests that must fail will count as "
              "failures", file=sys.stderr)
        return {}


def is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: stage.py SRC_ROOT BUILD_DIR GUEST_ROOT TRACES_DIR")
    src_root, build_dir, root, traces = sys.argv[1:]
    st = Stager(src_root, build_dir, root)
    # FDNC_QEMU_SUITES (qemu-ci.sh --suites): comma-separated suites for the guest's step 1; unset = all.
    only_suites = None
    if os.environ.get("FDNC_QEMU_SUITES"):
        only_suites = set(os.environ["FDNC_QEMU_SUITES"].split(","))

    def introspect(what):
        res = subprocess.run(["meson", "introspect", build_dir, what], capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"stage.py: meson introspect {what} failed: {res.stderr.strip()}")
        return json.loads(res.stdout)

    tests = introspect("--tests")
    targets = introspect("--targets")
    if not tests:
        sys.exit(f"stage.py: {build_dir} registers no tests (is it configured and built?)")

    guest_traces = None
    if os.path.isdir(traces):
        guest_traces = st.map_value(os.path.realpath(traces))
    else:
        print(f"stage.py: warning: no traces dir at {traces}; tests that need it will say so", file=sys.stderr)

    should_fail = load_should_fail(build_dir)
    guest_build = st.guest_path(build_dir)
    lines = {"tests.sh": [], "guest-tests.sh": []}
    for t in tests:
        cmd = t["cmd"]
        exe = cmd[0]
        suites = t.get("suite") or []
        suite = suites[0].split(":")[-1] if suites else "-"
        out = "guest-tests.sh" if "guest" in [x.split(":")[-1] for x in suites] else "tests.sh"
        if only_suites is not None and out == "tests.sh" and suite not in only_suites:
            lines[out].append("fdnc_skip_test " + " ".join(shlex.quote(x) for x in [
                t["name"], suite, f"suite {suite} not selected (qemu-ci.sh --suites)"]))
            continue
        if not os.path.exists(exe):
            sys.exit(f"stage.py: test {t['name']}: {exe} is not built (run ninja -C {build_dir})")
        if not is_elf(exe) or not os.path.realpath(exe).startswith(st.build_dir + os.sep):
            # An interpreter (python3, sh) or a system program: the guest holds only busybox and
            # fdnc's own binaries, so say so instead of running it.
            lines[out].append("fdnc_skip_test " + " ".join(shlex.quote(x) for x in [
                t["name"], suite, f"runs {os.path.basename(exe)}, which is not in the guest image"]))
            continue
        gcmd = [st.copy_file(exe, elf=is_elf(exe))] + [st.map_value(a) for a in cmd[1:]]
        env = {k: st.map_value(v) for k, v in (t.get("env") or {}).items()}
        if guest_traces and "FDNC_TRACES_DIR" not in env:
            env["FDNC_TRACES_DIR"] = guest_traces
        workdir = st.map_value(t["workdir"]) if t.get("workdir") else guest_build
        os.makedirs(st._dest(workdir), exist_ok=True)
        timeout = int(t.get("timeout") or 30)
        expect = "fail" if t.get("should_fail", should_fail.get(t["name"], False)) else "pass"
        envs = [f"{k}={v}" for k, v in sorted(env.items())]
        line = " ".join(shlex.quote(x) for x in [t["name"], suite, str(timeout), expect, workdir] + envs + ["--"] + gcmd)
        lines[out].append("fdnc_test " + line)

    tools = {}
    for tg in targets:
        if tg.get("type") == "executable" and tg.get("name") in TOOLS:
            f = tg["filename"][0]
            if os.path.exists(f):
                tools[TOOLS[tg["name"]]] = st.copy_file(f, elf=True)

    libs = st.copy_libraries()
    fdnc_dir = os.path.join(root, "fdnc")
    os.makedirs(fdnc_dir, exist_ok=True)
    for name, ls in lines.items():
        with open(os.path.join(fdnc_dir, name), "w") as f:
            f.write("# generated by scripts/qemu/stage.py from `meson introspect --tests`\n")
            f.write("\n".join(ls) + "\n")
    with open(os.path.join(fdnc_dir, "traces.dir"), "w") as f:
        f.write((guest_traces or "") + "\n")
    with open(os.path.join(fdnc_dir, "tools.env"), "w") as f:
        for var in TOOLS.values():
            f.write(f"{var}={shlex.quote(tools.get(var, ''))}\n")
    print(f"stage.py: {len(lines['tests.sh'])} tests, {len(lines['guest-tests.sh'])} guest tests, "
          f"tools: {', '.join(sorted(tools)) or 'none'}, {len(libs)} shared libraries")


if __name__ == "__main__":
    main()
