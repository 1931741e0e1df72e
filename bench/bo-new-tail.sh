#!/usr/bin/env bash
# bench/bo-new-tail.sh: guest bo_new p50/p99/max over interleaved fdnc-replay runs, per workload,
# round trip and build (issue 17's tail tables in bench/README.md "bo_new tail").
#
#   bench/bo-new-tail.sh [-n RUNS] [-w "gl-frames compute alloc-storm"] [-r "0 200"] \
#       LABEL=FDNC_REPLAY[,URI_EXTRA] ...
#
# e.g. bench/bo-new-tail.sh -n 10 before=/tmp/replay-old after=build-rel/tools/fdnc-replay/fdnc-replay \
#          after-poll0=build-rel/tools/fdnc-replay/fdnc-replay,poll_us=0
# Every run is `fdnc-replay --iova=guest -q --workload W --uri inproc:rtt_us=R[,URI_EXTRA] --json F`;
# the builds alternate run by run so a change in machine load reaches all of them alike. Timing is
# not a test: this prints figures, it never fails on them (a failed run is reported and skipped).
set -euo pipefail
runs=10 workloads="gl-frames compute alloc-storm" rtts="0 200"
while getopts "n:w:r:" o; do
  case $o in n) runs=$OPTARG ;; w) workloads=$OPTARG ;; r) rtts=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[[ $# -gt 0 ]] || { echo "usage: $0 [-n RUNS] [-w WORKLOADS] [-r RTTS] LABEL=BINARY[,URI_EXTRA] ..." >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for ((i = 1; i <= runs; i++)); do
  for w in $workloads; do for r in $rtts; do for spec in "$@"; do
    label=${spec%%=*} rest=${spec#*=} bin=${rest%%,*} extra=
    [[ $rest == *,* ]] && extra=,${rest#*,}
    f="$out/$label@$w@$r@$i.json"
    "$bin" --iova=guest -q --workload "$w" --uri "inproc:rtt_us=$r$extra" --json "$f" >/dev/null 2>&1 ||
      { echo "run failed: $label $w rtt $r #$i" >&2; rm -f "$f"; }
  done; done; done
done
python3 - "$out" <<'PY'
import glob, json, os, statistics as st, sys
rows = {}
for f in glob.glob(os.path.join(sys.argv[1], "*.json")):
    label, w, r, _ = os.path.basename(f)[:-5].split("@")
    b = json.load(open(f))["modes"]["guest"]["bo_new_us"]
    rows.setdefault((w, int(r), label), []).append((b["p50"], b["p99"], b["max"]))
print("| workload | rtt µs | build | p50 µs median | p99 µs median (min–max) | max µs median | runs p99<5 |")
print("|---|---|---|---|---|---|---|")
for (w, r, label), v in sorted(rows.items()):
    p99 = [x[1] for x in v]
    print(f"| {w} | {r} | {label} | {st.median(x[0] for x in v):.2f} | {st.median(p99):.2f} "
          f"({min(p99):.2f}–{max(p99):.2f}) | {st.median(x[2] for x in v):.1f} | {sum(p < 5 for p in p99)}/{len(v)} |")
PY
