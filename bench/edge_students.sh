#!/usr/bin/env bash
# Other edge students of one teacher (issue 13): a finished `semgen recipe` folder's teacher (its
# joint pretraining runs and their ensemble) taught again, one student variant per folder, beside the
# recipe's own student. Each variant's folder gets a copy of the teacher's runs (and the baseline's),
# which the recipe takes as finished, so only the student's stages run (about 1-2 h each on 2 cores).
# Resumable: run the same command again.
#
#   REAL=../shared/data/sem-real/train TEST=../shared/data/sem-real/dev_test \
#       bash bench/edge_students.sh out/recipe/joint3s e tta
#
# Variants (the recipe's student is efficientnet_lite0_035, the teacher's prediction as it is):
#   e     efficientnet_lite0_035e: Lite0's first three stages at full width (docs/classifier.md)
#   tta   the same student learning the teacher's flips-averaged prediction (--teacher-tta flips)
#   etta  both
# Figures: each folder's summary.md, and one edge table of every student's INT8 file against the
# teacher (the 3-seed ensemble's plain macro-F1 on TEST).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REAL:?set REAL to the real training images}" "${TEST:?set TEST to the real test images}"
SRC=${1:?the finished recipe folder whose teacher is reused}
shift
VARIANTS=${*:-e tta}
THREADS=${THREADS:-2}
[ -f "$SRC/recipe.json" ] || { echo "$SRC is not a recipe folder" >&2; exit 2; }
[ -f "$SRC/summary.md" ] || { echo "$SRC is not finished (no summary.md): run its semgen recipe command first" >&2; exit 2; }
shopt -s nullglob
# the copied runs are finished only for the settings they were made with: the recipe's defaults
python - "$SRC" <<'EOF'
import json, sys
from semgen.recipe.run import STUDENT_SETTINGS, RecipeConfig
c = json.load(open(f"{sys.argv[1]}/recipe.json"))["config"]
d = RecipeConfig(real=c["real"], baseline=True).to_dict()
diff = [k for k in d if k not in STUDENT_SETTINGS + ("student", "real") and c.get(k) != d[k]]
if diff:
    sys.exit(f"{sys.argv[1]} was made with settings other than the recipe's defaults and --baseline "
             f"({', '.join(diff)}); this script teaches students of such a recipe only")
EOF
runs=("$SRC/student_qat")
for v in $VARIANTS; do
  case $v in
    e) args=(--student efficientnet_lite0_035e) ;;
    tta) args=(--student efficientnet_lite0_035 --teacher-tta flips) ;;
    etta) args=(--student efficientnet_lite0_035e --teacher-tta flips) ;;
    *) echo "unknown variant '$v' (e, tta, etta)" >&2; exit 2 ;;
  esac
  dst="${SRC%/}_$v"
  mkdir -p "$dst"
  for d in "$SRC"/pretrain_s* "$SRC"/baseline_s*; do
    [ -e "$dst/$(basename "$d")" ] || cp -a "$d" "$dst/"
  done
  echo "== $v: semgen recipe ${args[*]} -> $dst" >&2
  semgen recipe --real "$REAL" --out "$dst" --test "$TEST" --tta d4 --baseline "${args[@]}" --qat --threads "$THREADS"
  runs+=("$dst/student_qat")
done
# the teacher's plain macro-F1 on TEST (the figure the 90 % goal is of), among the recipe's classes
teacher=$(semgen evaluate "$SRC/ensemble" --data "$TEST" --json --no-progress \
          | python -c 'import json, sys; print(json.load(sys.stdin)["macro_f1"])')
python bench/edge_table.py "${runs[@]}" --teacher-f1 "$teacher"
