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

With --mesa PREFIX (scripts/qemu-ci.sh --mesa: the install prefix of scripts/mesa/build-mesa.sh) it
also stages Mesa's freedreno for the guest: PREFIX/lib's libraries (symlinks kept, Mesa's no-op
drm-shim and libxatracker left out) under /fdnc/mesa/lib, the glvnd vendor file under
/fdnc/mesa/share/glvnd/egl_vendor.d/, tools/fdnc-glframes and fdnc's libfdnc_drm_shim.so, with the
ldd closure of all of them (glvnd's libEGL/libGLESv2/libGLdispatch, libdrm, libexpat, libzstd...;
Mesa's libEGL_mesa is dlopen'ed by glvnd through the vendor file and libgallium is its DT_NEEDED,
so the closure of libEGL_mesa covers what Mesa loads), and adds FDNC_GLFRAMES, FDNC_SHIM_SO and
FDNC_MESA_DIR to tools.env.
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
        self.ldd_env = None      # extra environment for ldd (Mesa's lib dir)
        self.skip_libs = []      # ldd results under these dirs are staged already (Mesa's prefix)

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
            res = subprocess.run(["ldd", elf], capture_output=True, text=True,
                                 env=dict(os.environ, **self.ldd_env) if self.ldd_env else None)
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
                if any(os.path.realpath(path).startswith(d + os.sep) for d in self.skip_libs):
                    continue
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


MESA_GUEST = GUEST_BASE + "/mesa"
MESA_SKIP = ("libxatracker", "libfreedreno_noop_drm_shim")


def stage_mesa(st, prefix, targets):
    """Mesa's install tree, fdnc-glframes and the shim (see the module doc); returns tools.env lines."""
    prefix = os.path.realpath(prefix)
    lib = os.path.join(prefix, "lib")
    vendor = os.path.join(prefix, "share", "glvnd", "egl_vendor.d", "50_mesa.json")
    if not os.path.isfile(vendor) or not os.path.isfile(os.path.join(lib, "libEGL_mesa.so.0")):
        sys.exit(f"stage.py: --mesa {prefix} is not a Mesa install prefix (no libEGL_mesa.so.0 / 50_mesa.json)")
    glib = st._dest(MESA_GUEST + "/lib")
    os.makedirs(glib, exist_ok=True)
    for name in sorted(os.listdir(lib)):
        path = os.path.join(lib, name)
        if os.path.isdir(path) or ".so" not in name or name.startswith(MESA_SKIP):
            continue
        if os.path.islink(path):
            os.symlink(os.readlink(path), os.path.join(glib, name))
        else:
            st.copy_file(path, MESA_GUEST + "/lib/" + name, elf=is_elf(path))
    st.copy_file(vendor, MESA_GUEST + "/share/glvnd/egl_vendor.d/50_mesa.json")
    st.ldd_env = {"LD_LIBRARY_PATH": lib}
    st.skip_libs.append(prefix)
    env = {"FDNC_GLFRAMES": "", "FDNC_SHIM_SO": "", "FDNC_MESA_DIR": MESA_GUEST}
    for tg in targets:
        f = (tg.get("filename") or [""])[0]
        if tg.get("name") == "fdnc-glframes" and tg.get("type") == "executable" and os.path.exists(f):
            env["FDNC_GLFRAMES"] = st.copy_file(f, elf=True)
        elif os.path.basename(f) == "libfdnc_drm_shim.so" and os.path.exists(f):
            env["FDNC_SHIM_SO"] = st.copy_file(f, elf=True)
    for k in ("FDNC_GLFRAMES", "FDNC_SHIM_SO"):
        if not env[k]:
            sys.exit(f"stage.py: --mesa: {k} is not built in {st.build_dir}")
    return env


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
    args = sys.argv[1:]
    mesa = None
    if len(args) == 6 and args[4] == "--mesa":
        mesa = args[5]
        args = args[:4]
    if len(args) != 4:
        sys.exit("usage: stage.py SRC_ROOT BUILD_DIR GUEST_ROOT TRACES_DIR [--mesa PREFIX]")
    src_root, build_dir, root, traces = args
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

    mesa_env = stage_mesa(st, mesa, targets) if mesa else {}
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
        for var, val in mesa_env.items():
            f.write(f"{var}={shlex.quote(val)}\n")
    print(f"stage.py: {len(lines['tests.sh'])} tests, {len(lines['guest-tests.sh'])} guest tests, "
          f"tools: {', '.join(sorted(tools)) or 'none'}, {len(libs)} shared libraries"
          + (f", Mesa from {mesa} as {MESA_GUEST}" if mesa else ""))


if __name__ == "__main__":
    main()
