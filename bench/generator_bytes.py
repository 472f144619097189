"""Do the procedural generators still make the same bytes? Record, then compare after a change.

For every registered generator it makes a small run (``--n`` images at ``--size`` px, master seed
0) for the default parameters and for every value of every choice and bool parameter forced
with ``--set`` (and the values its ``when`` condition needs, so the forced value is active), plus
every layout at ``--size2`` px. It hashes each image, mask and ``metadata.jsonl`` record, and
keeps each generator's parameter specs (what ``--list`` shows, with choice weights) and the
pretraining targets derived from them (``TargetSpace``), which must not change either.
``compare`` makes the same runs with the code on ``PYTHONPATH`` and lists the cases that differ.
A refactor must compare equal; a change that does not must bump the generator's ``version``.

    python bench/generator_bytes.py record /tmp/gen_bytes.json        # before the change
    python bench/generator_bytes.py compare /tmp/gen_bytes.json       # after: exit 1 if any differ
    PYTHONPATH=/tmp/old-worktree python bench/generator_bytes.py record /tmp/gen_bytes.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time


def _forced(space, spec, value) -> dict:
    """``{spec: value}`` plus what ``spec.when`` (and theirs, recursively) needs to be active."""
    out = {spec.name: value}
    todo = [spec]
    while todo:
        s = todo.pop()
        for key, allowed in (s.when or {}).items():
            if key not in out:
                out[key] = allowed[0]
                todo.append(space[key])
    return out


def cases(n: int, size: int, n2: int, size2: int) -> list[tuple[str, str, dict, int, int]]:
    """``(key, generator, overrides, n, size)`` of every run."""
    from semgen.generators.procedural.registry import create_generator, list_generators

    out = []
    for name in list_generators():
        space = create_generator(name).space
        out.append((f"{name}|default|{size}", name, {}, n, size))
        for spec in space:
            if spec.kind == "choice":
                values = list(spec.choices)
            elif spec.kind == "bool":
                values = [False, True]
            else:
                continue
            for v in values:
                ov = _forced(space, spec, v)
                key = f"{name}|" + ",".join(f"{k}={ov[k]}" for k in sorted(ov)) + f"|{size}"
                out.append((key, name, ov, n, size))
        for layout in space["layout"].choices:
            out.append((f"{name}|layout={layout}|{size2}", name, {"layout": layout}, n2, size2))
    seen, uniq = set(), []
    for c in out:  # e.g. layout=X forced directly and through a `when`
        if c[0] not in seen:
            seen.add(c[0])
            uniq.append(c)
    return uniq


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_case(name: str, overrides: dict, n: int, size: int, tmp: str) -> dict:
    """Hashes of one run's images, masks and records (or the one-line error it raised)."""
    from semgen.errors import SemgenError
    from semgen.generators.procedural.generation import generate

    out = os.path.join(tmp, "run")
    try:
        generate(name, n, out, seed=0, size=size, overrides=overrides, progress=False)
    except SemgenError as e:
        return {"error": str(e)}
    res: dict = {"records": [], "images": [], "masks": []}
    with open(os.path.join(out, "metadata.jsonl"), "rb") as f:
        for line in f:
            rec = json.loads(line)
            res["records"].append(hashlib.sha256(line.rstrip(b"\n")).hexdigest())
            res["images"].append(_sha(os.path.join(out, rec["file_name"])))
            if rec.get("mask_file_name"):
                res["masks"].append(_sha(os.path.join(out, rec["mask_file_name"])))
    import shutil

    shutil.rmtree(out)
    return res


def specs() -> dict:
    """Per generator: its version and parameter specs; the pretraining targets of all of them."""
    from semgen.generators.procedural.registry import create_generator, list_generators
    from semgen.pretrain.labels import TargetSpace

    out = {}
    for name in list_generators():
        g = create_generator(name)
        rows = [dict(s.describe(), weights=list(s.weights) if s.weights else None) for s in g.space]
        out[f"{name}|spec"] = {"label": g.label, "version": g.version, "space": json.loads(json.dumps(rows))}
    for labels in ("fine", "coarse"):
        out[f"targets|{labels}"] = TargetSpace.build(labels=labels).to_dict()
    return out


def make(args) -> dict:
    todo = cases(args.n, args.size, args.n2, args.size2)
    t0 = time.time()
    res = specs()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (key, name, ov, n, size) in enumerate(todo):
            res[key] = run_case(name, ov, n, size, tmp)
            if (i + 1) % 25 == 0:
                print(f"  {i + 1}/{len(todo)} cases, {time.time() - t0:.0f} s", file=sys.stderr)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("record", "compare"))
    ap.add_argument("file", help="JSON of hashes (written by record, read by compare)")
    ap.add_argument("--n", type=int, default=12, help="images per forced value (default 12)")
    ap.add_argument("--size", type=int, default=64, help="image size of those runs (default 64)")
    ap.add_argument("--n2", type=int, default=4, help="images per layout at --size2 (default 4)")
    ap.add_argument("--size2", type=int, default=128, help="second image size, layouts only (default 128)")
    args = ap.parse_args(argv)
    import semgen

    print(f"semgen from {os.path.dirname(semgen.__file__)}", file=sys.stderr)
    if args.mode == "record":
        res = make(args)
        with open(args.file, "w") as f:
            json.dump({"settings": vars(args), "cases": res}, f, sort_keys=True)
        n_img = sum(len(r.get("images", [])) for r in res.values())
        n_err = sum("error" in r for r in res.values())
        print(f"{len(res)} cases, {n_img} images recorded ({n_err} cases raised an error) -> {args.file}")
        return 0
    with open(args.file) as f:
        ref = json.load(f)
    s = ref["settings"]
    for k in ("n", "size", "n2", "size2"):
        setattr(args, k, s[k])
    res = make(args)
    old, new = ref["cases"], res
    missing = sorted(set(old) - set(new))
    added = sorted(set(new) - set(old))
    differ = []
    for key in sorted(set(old) & set(new)):
        if old[key] != new[key]:
            what = [k for k in old[key] if old[key].get(k) != new[key].get(k)]
            differ.append((key, what))
    n_img = sum(len(r.get("images", [])) for k, r in new.items() if k in old)
    print(f"{len(set(old) & set(new))} cases ({n_img} images, their masks and records) compared: "
          f"{len(differ)} differ, {len(missing)} missing, {len(added)} new")
    for key, what in differ[:40]:
        print(f"  differs: {key}: {', '.join(what)}")
    for key in missing[:20]:
        print(f"  missing: {key}")
    for key in added[:20]:
        print(f"  new: {key}")
    return 1 if differ or missing else 0


if __name__ == "__main__":
    sys.exit(main())
