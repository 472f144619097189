"""CLI: ``semgen info``, ``semgen validate``, ``semgen merge``."""

from __future__ import annotations

import json
import sys

from .ops import merge_dirs, summarize, validate_dir


def register(sub) -> None:
    p = sub.add_parser("info", help="class counts, sources and generators of a dataset dir; "
                       "for a model run dir, what it was trained on (its --init chain)")
    p.add_argument("dir", help="dataset dir, or a semgen train / pretrain run dir or ensemble")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_info)

    p = sub.add_parser("validate", help="check every record against its file; non-zero exit on a mismatch")
    p.add_argument("dir", help="dataset dir")
    p.add_argument("--no-hash", action="store_true", help="skip sha256 checks (faster)")
    p.set_defaults(func=_validate)

    p = sub.add_parser("merge", help="merge dataset dirs (e.g. shards) into a new one")
    p.add_argument("inputs", nargs="+", metavar="DIR", help="dataset dirs to merge (e.g. the shards of one run)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="new dataset dir to write")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out input records that are unreadable or whose file is missing or does not match "
                   "its sha256 (counted; default: such a record is an error and nothing is written)")
    p.set_defaults(func=_merge)


def _info(args) -> int:
    from pathlib import Path

    from ..recipe.run import describe_recipe, is_recipe

    if is_recipe(args.dir):  # a recipe folder: its stages (--json: its recipe.json)
        print((Path(args.dir) / "recipe.json").read_text().rstrip() if args.json else "\n".join(describe_recipe(args.dir)))
        return 0
    if not (Path(args.dir) / "metadata.jsonl").exists() and (Path(args.dir) / "config.json").is_file() \
            or (Path(args.dir) / "ensemble.json").is_file():
        return _run_info(args)
    s = summarize(args.dir)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"{s['root']}: {s['num_records']} records (schema {s['schema_version']}, "
          f"semgen {s['semgen_version']}), {s['with_masks']} with masks")
    for title, key in (("classes", "class_counts"), ("sources", "sources"),
                       ("generators", "generators"), ("sizes", "sizes")):
        if s[key]:
            print(f"{title}:")
            width = max(len(k) for k in s[key])
            for k, v in s[key].items():
                print(f"  {k:<{width}}  {v:>7}")
    return 0


def _run_info(args) -> int:
    """A model run dir (or an ensemble): its lineage, from :mod:`semgen.classifier.lineage`."""
    from ..classifier.ensemble import is_ensemble, read_ensemble
    from ..classifier.lineage import describe, lineage, synthetic_budget

    runs = ([m["absolute"] for m in read_ensemble(args.dir)["members"]] if is_ensemble(args.dir) else [args.dir])
    out = {r: lineage(r) for r in runs}
    if args.json:
        print(json.dumps({r: {"stages": st, "synthetic": synthetic_budget(st)} for r, st in out.items()}, indent=2))
        return 0
    for r, st in out.items():
        print(f"{r}:")
        print("\n".join(describe(st)))
    return 0


def _validate(args) -> int:
    problems = validate_dir(args.dir, check_hash=not args.no_hash)
    for p in problems[:50]:
        print(p)
    if len(problems) > 50:
        print(f"... and {len(problems) - 50} more")
    if problems:
        print(f"{args.dir}: {len(problems)} problem(s)")
        return 1
    print(f"{args.dir}: OK")
    return 0


def _merge(args) -> int:
    res = merge_dirs(args.inputs, args.out, skip_bad=args.skip_bad)
    if res.skipped:  # --skip-bad: say how many, and the first, so the count is never a surprise
        print(f"semgen: warning: left out {len(res.skipped)} bad input record(s) (--skip-bad); first: "
              f"{res.skipped[0]}", file=sys.stderr)
    print(f"merged {len(args.inputs)} dirs into {res.dataset.root}: {res.records} records"
          + (f" ({len(res.skipped)} bad record(s) left out)" if res.skipped else ""))
    return 0
