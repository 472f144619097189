#!/usr/bin/env bash
# Side by side: cleanvision's near-duplicate, exact-duplicate and blur checks vs `semgen curate`,
# on the same labelled 10k line/space images (bench_curation.py data). cleanvision is AGPL: it is
# installed ONLY into its own venv under /tmp and is never a dependency of semgen.
#
#   bash bench/bench_cleanvision.sh [DATA_DIR] [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-/tmp/semgen-bench/lines10k}
WORKERS=${2:-2}
PY=${PY:-/work/venv/bin/python}
CV_VENV=/tmp/cleanvision-venv
mkdir -p out/bench

nice "$PY" bench/bench_curation.py data "$DATA"
if [ ! -x "$CV_VENV/bin/python" ]; then
  "$("$PY" -c 'import sys; print(sys._base_executable)')" -m venv "$CV_VENV"
  "$CV_VENV/bin/pip" install -q -c constraints.txt cleanvision
fi

echo "== cleanvision $("$CV_VENV/bin/python" -c 'import cleanvision; print(cleanvision.__version__)') (n_jobs=$WORKERS)"
nice "$CV_VENV/bin/python" - "$DATA" "$WORKERS" > out/bench/cleanvision_raw.json <<'PYEOF'
import json, os, sys, time
from pathlib import Path
from cleanvision import Imagelab

data, workers = Path(sys.argv[1]), int(sys.argv[2])
lab = Imagelab(data_path=str(data / "images" / "clean"))
t = time.perf_counter()
lab.find_issues({"near_duplicates": {}, "exact_duplicates": {}, "blurry": {}}, n_jobs=workers, verbose=False)
dt = time.perf_counter() - t
name = lambda p: Path(p).stem
issues = lab.issues
print(json.dumps({
    "seconds": round(dt, 2),
    "near_sets": [[name(p) for p in s] for s in lab.info["near_duplicates"]["sets"]],
    "exact_sets": [[name(p) for p in s] for s in lab.info["exact_duplicates"]["sets"]],
    "blurry": [name(p) for p in issues.index[issues["is_blurry_issue"]]],
    "load": "load average %.2f %.2f %.2f" % os.getloadavg(),
}))
PYEOF

nice "$PY" - "$DATA" <<'PYEOF'
import itertools, json, sys
sys.path.insert(0, "bench")
from bench_curation import make_data, score_findings
truth = make_data(sys.argv[1])
raw = json.loads(open("out/bench/cleanvision_raw.json").read().strip().splitlines()[-1])  # after its log lines
pairs = [p for s in raw["near_sets"] + raw["exact_sets"] for p in itertools.combinations(s, 2)]
res = {"tool": "cleanvision", "seconds": raw["seconds"], **score_findings(truth, pairs, raw["blurry"]),
       "near_sets": len(raw["near_sets"]), "load": raw["load"]}
json.dump(res, open("out/bench/cleanvision.json", "w"), indent=2)
print(json.dumps(res))
PYEOF

echo "== semgen curate (workers=$WORKERS, no cache)"
nice "$PY" bench/bench_curation.py ours "$DATA" --workers "$WORKERS"
