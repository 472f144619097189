"""Score whole profiles with the TSTR probe of ``semgen tune --objective tstr``, without a search.

For each profile (and the defaults), a ridge probe on frozen features is fitted on ``--n``
generated images per class (every reference class that has a generator; a profile's classes
with its ranges, the others at their defaults) and tested on the reference: macro-F1 and
per-class F1 (:class:`semgen.tune.tstr.TSTR`, the ``check`` stage: the whole reference).
Use it to compare profiles cheaply before paying for a pretraining run, and give it a training
pool, never a test set.

Example (docs/tune.md, the profiles of session 25)::

    python bench/tstr_profiles.py --reference ../shared/data/sem-real/train \\
        --profiles out/tune/s25_all.yaml out/tune/s25_sel.yaml --n 60 --start 90
    # the noise: 4 disjoint sets of 60 per class, each profile paired with the defaults on the same sets
    python bench/tstr_profiles.py --reference ../shared/data/sem-real/train \\
        --profiles out/tune/s25_all.yaml out/tune/s25_sel.yaml --n 60 --start 1000 --sets 4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semgen.generators.procedural.profile import load_profile  # noqa: E402
from semgen.generators.procedural.registry import create_generator  # noqa: E402
from semgen.tune.objective import Reference  # noqa: E402
from semgen.tune.search import generated_labels  # noqa: E402
from semgen.tune.tstr import TSTR, Embedder  # noqa: E402


def score_profiles(reference, profiles, *, n: int = 60, start: int = 0, sets: int = 1, size: int = 128,
                   seed: int = 0, features: str = "imagenet", features_arch: str | None = None) -> list[dict]:
    """One row per profile (the defaults first): ``name``, ``macro_f1`` (mean over ``sets`` disjoint
    sets of ``n`` generated images per class, from index ``start``), ``per_set``, ``per_class``
    (mean F1) and ``diff``: the paired difference from the defaults on the same sets (mean, and the
    standard deviation over the sets)."""
    ref = Reference(reference, size)
    probe = TSTR(ref, {lb: create_generator(lb) for lb in generated_labels(ref)},
                 Embedder(features, features_arch, size=size), size=size, seed=seed)
    rows = []
    for path in [None, *profiles]:
        ranges = {} if path is None else {create_generator(c).label: r
                                          for c, r in load_profile(path)["classes"].items()}
        ms = [probe.evaluate(ranges, n=n, start=start + k * n) for k in range(sets)]
        f1 = np.array([m["macro_f1"] for m in ms])
        row = {"name": "defaults" if path is None else str(path), "macro_f1": float(f1.mean()),
               "per_set": f1.tolist(),
               "per_class": {c: float(np.mean([m["per_class"][c]["f1"] for m in ms])) for c in ms[0]["per_class"]}}
        if rows:
            d = f1 - np.array(rows[0]["per_set"])
            row["diff"] = {"mean": float(d.mean()), "sd": float(d.std(ddof=1)) if sets > 1 else None}
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True, help="real training pool (dataset dir or ImageFolder)")
    ap.add_argument("--profiles", nargs="*", default=[], help="profile YAMLs (the defaults are always scored)")
    ap.add_argument("--n", type=int, default=60, help="generated images per class")
    ap.add_argument("--start", type=int, default=0, help="index of the first generated image (seeds)")
    ap.add_argument("--sets", type=int, default=1, help="disjoint sets of --n images per class, averaged (and paired)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features", default="imagenet", help="frozen backbone: a semgen train --init value")
    ap.add_argument("--features-arch")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args(argv)
    rows = score_profiles(a.reference, a.profiles, n=a.n, start=a.start, sets=a.sets, size=a.size, seed=a.seed,
                          features=a.features, features_arch=a.features_arch)
    classes = list(rows[0]["per_class"])
    print("| profile | TSTR macro-F1 | minus the defaults (mean, sd over sets) | " + " | ".join(classes) + " |")
    print("|---|---|---|" + "---|" * len(classes))
    for r in rows:
        d = r.get("diff")
        dd = "-" if d is None else f"{d['mean']:+.3f}" + ("" if d["sd"] is None else f" ({d['sd']:.3f})")
        print(f"| {r['name']} | {r['macro_f1']:.3f} | {dd} | "
              + " | ".join(f"{r['per_class'][c]:.2f}" for c in classes) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
