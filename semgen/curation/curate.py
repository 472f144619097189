"""``semgen curate``: decide which images of a dataset dir to keep, and say why for every one.

Pipeline (:func:`curate`): analyse every image (metrics, hashes, thumbnail; cached by sha256;
process pool) -> quality (sanity rules, config bands, reference typicality) -> leakage against a
test set -> exact duplicates -> near-duplicates (best score kept) -> per-class quota -> write a
new dataset dir (hard links, never re-encoded) with ``metadata.jsonl`` (kept) and
``rejected.jsonl`` (everything else, with reasons). The input dir is only read.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SemgenError, StrictFailure
from ..imageio import MAX_PIXELS, write_bytes_atomic
from ..manifests import DatasetDir, current_command, dumps_record, iter_source, read_source, record_key
from ..manifests.imagefolder import IMAGE_SUFFIXES, is_dataset_dir
from ..manifests.ops import link_or_copy, new_output
from ..parallel import Backend, map_fetched
from . import ANALYSIS_MODULES
from .analyze import (ANALYSIS_VERSION, THUMB_SIZE, analyze_fetched, analyze_file, dihedral_signatures, fetch_file,
                      thumb_from_bytes, thumb_noise, with_bytes)
from .cache import AnalysisCache, default_cache_path
from .curate_config import CurateConfig
from .dedup import cross_pairs, near_duplicate_pairs
from .scoring import Z_MAX, ReferenceModel, band_reasons, generic_score, load_config, sanity_reasons

REJECTED_NAME = "rejected.jsonl"
CONFIG_KEY = "curate"


@dataclass
class Item:
    """One input image and everything curation learns about it."""

    index: int
    id: str
    label: str
    path: str
    record: dict | None              #: the manifest record (None for an ImageFolder item)
    sha256: str | None = None
    analysis: dict | None = None
    reasons: list = field(default_factory=list)
    score: float = 0.0
    duplicate_of: str | None = None
    zscores: dict | None = None
    detail: str = ""                 #: why an unreadable file could not be read

    @property
    def ok(self) -> bool:
        return self.analysis is not None


@dataclass
class CurationResult:
    """What :func:`curate` did; the report is drawn from it."""

    items: list
    kept: list
    rejected: list
    exact_groups: list       #: [[kept id, dup ids...]]
    near_groups: list        #: [(kept id, dup id, hamming, local, rms)]
    leaks: list              #: [(item id, test id, hamming, local, rms, test path)]
    reference: list          #: reference Items (for histograms)
    reference_model: ReferenceModel | None
    against: list
    computed: int
    cached: int
    out: Path
    config: dict
    bad_lines: list = field(default_factory=list)  #: manifest lines that made no item (invalid, unreadable)

    def counts(self) -> dict:
        # images per kind of reason (an image with three atypical metrics counts once); a manifest
        # line that made no item counts as rejected too, or the summary would say "rejected 0"
        reasons = Counter(k for it in self.rejected for k in {r.split(":", 1)[0] for r in it.reasons})
        reasons.update(b["reasons"][0].split(":", 1)[0] for b in self.bad_lines)
        return {"input": len(self.items) + len(self.bad_lines), "kept": len(self.kept),
                "rejected": len(self.rejected) + len(self.bad_lines),
                "computed": self.computed, "cached": self.cached, "reasons": dict(sorted(reasons.items())),
                "kept_per_class": dict(sorted(Counter(it.label for it in self.kept).items())),
                "input_per_class": dict(sorted(Counter(it.label for it in self.items).items()))}


# -- loading inputs ------------------------------------------------------------------------------

def load_dataset_items(root) -> tuple[list[Item], list[dict]]:
    """Items of a dataset dir; invalid manifest lines become pre-rejected items (never a crash).

    Unlike the other readers of :func:`~semgen.manifests.iter_source`, which skip an unreadable
    line with a warning, curate reports each line that makes no item (unreadable, invalid, or a
    record repeated) in its rejected file, where ``--strict`` counts it (issue 14).
    """
    DatasetDir.open(root)  # a dataset dir, not an ImageFolder: curate writes records back
    items: list[Item] = []
    bad: list[dict] = []
    seen: set[str] = set()

    def on_bad(n: int, obj, why: str) -> None:
        bad.append({"line": n, "record": obj,
                    "reasons": ["unreadable_line" if obj is None else f"invalid_record:{why}"]})

    for it in iter_source(root, on_bad=on_bad):
        key = record_key(it.record)
        if key in seen:
            bad.append({"line": it.line, "record": it.record, "reasons": [f"repeated_record:{key}"]})
            continue
        seen.add(key)
        items.append(Item(len(items), key, it.label, str(it.path), it.record))
    return items, bad


def load_any_items(root, *, labels: bool = True, what: str = "input") -> list[Item]:
    """Items of a dataset dir, an ImageFolder tree, a flat folder of images, or one image file.

    With ``labels`` an ImageFolder's class folders go through the taxonomy (an unknown name is an
    error); without (a test set for the leakage check), or for a file or a folder with images at
    its top level, every image file under ``root`` is taken, labelled ``other``.
    """
    root = Path(root)
    if is_dataset_dir(root):
        return load_dataset_items(root)[0]
    flat = root.is_file() or (root.is_dir() and any(
        p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()))
    found = read_source(root, labels=labels and not flat, what=what)
    return [Item(k, record_key(it.record), it.label or "other", str(it.path), None) for k, it in enumerate(found)]


# -- analysis ------------------------------------------------------------------------------------

#: Fewer images than this are analysed in this process: a pool costs more than it saves.
POOL_FROM = 32


def analyze_items(items: list[Item], *, workers: int = 1, cache_path=None, allow_16bit: bool = False,
                  max_pixels: int = MAX_PIXELS, desc: str = "analyse", progress: bool = True,
                  backend: Backend | None = None) -> tuple[int, int]:
    """Fill ``item.analysis`` (or a reason) for every item; returns (computed, cached) counts.

    Results come back in input order whatever the number of workers, so the output is deterministic.
    The workers (:func:`semgen.parallel.map_items`) exit when this process dies; scripts that call
    it with ``workers > 1`` need the usual ``if __name__ == "__main__":`` guard. With ``backend``
    (:func:`semgen.parallel.make_backend`, e.g. a Ray cluster) the analyses run there instead:
    this process reads each file and looks up the cache, the backend's tasks decode and measure.
    """
    cache = AnalysisCache(cache_path) if cache_path else None
    jobs = [(it.path, (it.record or {}).get("sha256"), str(cache_path) if cache_path else None,
             allow_16bit, max_pixels) for it in items]
    computed = cached = 0
    pending: list = []
    try:
        from ..progress import progress_bar

        bar = progress_bar(total=len(jobs), desc=desc, unit="img", enabled=progress)
        results = map_fetched(analyze_file, jobs, workers=workers, backend=backend, fetch=fetch_file,
                              fetched_fn=analyze_fetched, serial_below=POOL_FROM, preload=ANALYSIS_MODULES)
        try:
            for it, res in zip(items, results):
                it.sha256 = res.get("sha256")
                if res["ok"]:
                    it.analysis = res
                    if res["computed"]:
                        computed += 1
                        if cache is not None:
                            pending.append((res["sha256"], res))
                            if len(pending) >= 512:
                                cache.put_many(pending)
                                pending.clear()
                    else:
                        cached += 1
                else:
                    it.reasons.append(f"unreadable:{res['reason']}")
                    it.detail = res.get("detail") or ""
                bar.update(1)
        finally:
            bar.close()
            results.close()  # an early exit shuts the pool down now, not at garbage collection
        if cache is not None and pending:
            cache.put_many(pending)
    finally:
        if cache is not None:
            cache.close()
    return computed, cached


def _thumbs(items: list[Item]) -> np.ndarray:
    if not items:
        return np.zeros((0, THUMB_SIZE * THUMB_SIZE), np.float32)
    return np.stack([thumb_from_bytes(it.analysis["thumb"]) for it in items])


def _noise(items: list[Item]) -> np.ndarray:
    return np.array([thumb_noise(it.analysis) for it in items], np.float32)


# -- the decision --------------------------------------------------------------------------------

def curate(input_dir, out=None, *, backend: Backend | None = None, **kwargs) -> CurationResult:
    """Curate a dataset dir into a new one; see the module docstring.

    Parameters
    ----------
    input_dir : CurateConfig or path
        The settings (:class:`~.curate_config.CurateConfig`); or, the keyword form, the input
        dir, with ``out`` and the other fields of the config as keywords (``None``: the default).
    backend : Backend, optional
        Where the image analyses run (:func:`semgen.parallel.make_backend`: a Ray cluster, say)
        instead of ``workers`` local processes. Not part of the config: the output is the same.

    Returns
    -------
    CurationResult
        Its ``config`` is what ``dataset.json`` records under ``configs.curate``: the config's
        :meth:`~.curate_config.CurateConfig.settings`, the thresholds file's content and the
        analysis version.

    Examples
    --------
    >>> curate(CurateConfig(input="data/proc", out="data/curated", per_class=100))  # doctest: +SKIP
    """
    cfg = CurateConfig.coerce(input_dir, out=out, **kwargs)
    src, out = Path(cfg.input), Path(cfg.out)
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise SemgenError("--out must be a new dir: curate never modifies its input")
    rules = load_config(cfg.config) if cfg.config else {"sanity": {}, "z_max": None, "bands": {}}
    params = cfg.near_dup_params()
    zmax = cfg.z_max if cfg.z_max is not None else (rules["z_max"] if rules["z_max"] is not None else Z_MAX)
    cache_path = (default_cache_path() if cfg.cache is True else Path(cfg.cache)) if cfg.cache else None
    reference, against, per_class = cfg.reference, cfg.against, cfg.per_class
    # the thresholds file's content, not just its name: editing the file is a new configuration
    run_config = {**cfg.settings(), "thresholds": rules, "analysis_version": ANALYSIS_VERSION}

    items, bad_lines = load_dataset_items(src)
    # One curate per --out (two would rewrite each other's files), and a new --out that a kill -9 or
    # a full disk interrupted is cleared and made again by the same command (issue 14): new_output.
    with new_output(out, "semgen curate") as dst:
        made = (dst.read_info().get("configs", {}).get(CONFIG_KEY) or {}).get("analysis_version")
        if made not in (None, ANALYSIS_VERSION):
            # not "use the same arguments": the same arguments now measure other numbers
            raise SemgenError(f"{out} was curated by a semgen whose image analysis was version {made}; this one's "
                              f"is {ANALYSIS_VERSION} (its metrics or hashes changed), so its decisions could "
                              "differ: curate into another --out")
        dst.check_config(CONFIG_KEY, run_config)

        computed, cached = analyze_items(items, workers=cfg.workers, cache_path=cache_path,
                                         allow_16bit=cfg.allow_16bit, max_pixels=cfg.max_pixels, desc="curate",
                                         progress=cfg.progress, backend=backend)
        ref_items: list[Item] = []
        model = None
        if reference:
            ref_items = load_any_items(reference, what="--reference")
            c2 = analyze_items(ref_items, workers=cfg.workers, cache_path=cache_path, allow_16bit=True,
                               max_pixels=cfg.max_pixels, desc="reference", progress=cfg.progress,
                               backend=backend)
            computed, cached = computed + c2[0], cached + c2[1]
            model = ReferenceModel.fit([{"label": it.label, "metrics": it.analysis["metrics"]}
                                        for it in ref_items if it.ok])
        against_items: list[Item] = []
        if against:
            against_items = load_any_items(against, labels=False, what="--against")
            c3 = analyze_items(against_items, workers=cfg.workers, cache_path=cache_path, allow_16bit=True,
                               max_pixels=cfg.max_pixels, desc="against", progress=cfg.progress,
                               backend=backend)
            computed, cached = computed + c3[0], cached + c3[1]
            # a leakage check that silently skips test images proves nothing: every one must be read
            unread = [a for a in against_items if not a.ok]
            if unread or not against_items:
                first = f" (first: {unread[0].path}: {', '.join(unread[0].reasons)})" if unread else ""
                raise SemgenError(f"--against {against}: {len(unread)} of {len(against_items)} test image(s) "
                                  f"could not be read{first}; the leakage check needs every one")

        good = [it for it in items if it.ok]
        # 1. quality
        for it in good:
            m = it.analysis["metrics"]
            it.reasons += sanity_reasons(m, rules["sanity"])
            it.reasons += [r for r in band_reasons(it.label, m, rules["bands"]) if r not in it.reasons]
            if model is not None:
                it.score, why, it.zscores = model.score(it.label, m, zmax)
                it.reasons += [r for r in why if r not in it.reasons]
            else:
                it.score = generic_score(m)

        # 2. leakage (exact and near) against the test set
        leaks = []
        ag = [a for a in against_items if a.ok]
        if ag:
            by_pixels = defaultdict(list)
            for a in ag:
                by_pixels[a.analysis["hashes"]["pixels"]].append(a)
            hits: dict[int, tuple] = {}
            for k, it in enumerate(good):
                for a in by_pixels.get(it.analysis["hashes"]["pixels"], [])[:1]:
                    hits[k] = (a, 0, 0.0, 0.0)
            if cfg.dihedral:
                sigs = list(map_fetched(dihedral_signatures, [a.path for a in ag], workers=cfg.workers, backend=backend,
                                        fetch=with_bytes, fetched_fn=dihedral_signatures, serial_below=POOL_FROM,
                                        preload=ANALYSIS_MODULES))
                keep = [k for k, sg in enumerate(sigs) if sg is not None]
                ref_of = np.repeat(np.array(keep, np.int64), 8)
                ref_hash = [h for k in keep for h in sigs[k]["phash"]]
                ref_shash = [h for k in keep for h in sigs[k]["shash"]]
                ref_thumbs = np.stack([thumb_from_bytes(t) for k in keep for t in sigs[k]["thumb"]]) \
                    if keep else np.zeros((0, THUMB_SIZE * THUMB_SIZE), np.float32)
                ref_noise = np.repeat(_noise([ag[k] for k in keep]), 8)
            else:
                ref_of = np.arange(len(ag), dtype=np.int64)
                ref_hash = [a.analysis["hashes"]["phash"] for a in ag]
                ref_shash = [a.analysis["hashes"]["shash"] for a in ag]
                ref_thumbs = _thumbs(ag)
                ref_noise = _noise(ag)
            cp = cross_pairs([it.analysis["hashes"]["shash"] for it in good], [it.analysis["hashes"]["phash"] for it in good],
                             _thumbs(good), _noise(good), ref_shash, ref_hash, ref_thumbs, ref_noise, params)
            cp["r"] = ref_of[cp["r"]]
            for q, r, d, lo, rm in zip(cp["q"], cp["r"], cp["hamming"], cp["local"], cp["rms"]):
                if int(q) not in hits or (hits[int(q)][1] > 0 and lo < hits[int(q)][2]):
                    hits[int(q)] = (ag[int(r)], int(d), float(lo), float(rm))
            for k in sorted(hits):
                a, d, lo, rm = hits[k]
                good[k].reasons.append(f"leak:{a.id}")
                leaks.append((good[k].id, a.id, d, round(lo, 2), round(rm, 3), a.path, good[k].path))

        # 3. exact duplicates: the best-scored copy stays, the rest point to it
        def rank(it: Item):
            return (bool(it.reasons), -it.score, it.index)

        exact_groups = []
        groups = defaultdict(list)
        for it in good:
            groups[it.analysis["hashes"]["pixels"]].append(it)
        for members in groups.values():
            if len(members) < 2:
                continue
            members = sorted(members, key=rank)
            head = members[0]
            for it in members[1:]:
                it.reasons.append(f"duplicate_of:{head.id}")
                it.duplicate_of = head.id
            exact_groups.append([head.id] + [it.id for it in members[1:]])

        # 4. near-duplicates among what is still in: greedy leaders in score order
        live = [it for it in good if not it.reasons]
        near_groups = []
        if len(live) > 1:
            npairs = near_duplicate_pairs([it.analysis["hashes"]["shash"] for it in live],
                                          [it.analysis["hashes"]["phash"] for it in live], _thumbs(live), _noise(live),
                                          params)
            nbrs = defaultdict(list)
            for i, j, d, lo, rm in zip(npairs["i"], npairs["j"], npairs["hamming"], npairs["local"], npairs["rms"]):
                nbrs[int(i)].append((int(j), int(d), float(lo), float(rm)))
                nbrs[int(j)].append((int(i), int(d), float(lo), float(rm)))
            leader_of: dict[int, int] = {}
            is_leader = set()
            for k in sorted(range(len(live)), key=lambda k: rank(live[k])):
                lead = [(j, d, lo, rm) for j, d, lo, rm in nbrs.get(k, ()) if j in is_leader]
                if lead:
                    j, d, lo, rm = min(lead, key=lambda t: (-live[t[0]].score, live[t[0]].index))
                    live[k].reasons.append(f"near_duplicate_of:{live[j].id}")
                    live[k].duplicate_of = live[j].id
                    leader_of[k] = j
                    near_groups.append((live[j].id, live[k].id, d, round(lo, 2), round(rm, 3)))
                else:
                    is_leader.add(k)

        # 5. per-class quota
        if per_class is not None:
            by_cls = defaultdict(list)
            for it in good:
                if not it.reasons:
                    by_cls[it.label].append(it)
            for members in by_cls.values():
                for it in sorted(members, key=rank)[per_class:]:
                    it.reasons.append(f"per_class_limit:{per_class}")

        kept = [it for it in items if not it.reasons]
        rejected = [it for it in items if it.reasons]
        result = CurationResult(items, kept, rejected, exact_groups, near_groups, leaks, ref_items, model,
                                against_items, computed, cached, out, run_config, bad_lines)
        _write_output(dst, src, result, bad_lines, run_config)
    # after the output is complete: --strict fails the command but keeps what it wrote, which says why
    unreadable = [it for it in rejected if any(r.startswith("unreadable:") for r in it.reasons)]
    if cfg.strict and (unreadable or bad_lines):
        raise StrictFailure(f"{len(unreadable)} unreadable image(s) and {len(bad_lines)} invalid manifest "
                            f"line(s) in {src} (see {out / REJECTED_NAME}); --strict makes that an error", result)
    return result


def _curation_fields(it: Item, status: str) -> dict:
    cur = {"status": status, "score": round(float(it.score), 6), "reasons": list(it.reasons),
           "duplicate_of": it.duplicate_of}
    return cur


def _write_output(dst: DatasetDir, src: Path, res: CurationResult, bad_lines: list, run_config: dict) -> None:
    src_ds = DatasetDir(src)
    kept_recs = []
    for it in res.kept:
        rec = dict(it.record)
        for fld in ("file_name", "mask_file_name"):
            if rec.get(fld):
                link_or_copy(src_ds.path(rec[fld]), dst.path(rec[fld]))
        rec["metrics"] = it.analysis["metrics"]
        rec["curation"] = _curation_fields(it, "kept")
        kept_recs.append(rec)
    rej_lines = []
    for it in res.rejected:
        rec = dict(it.record)
        if it.analysis is not None:
            rec["metrics"] = it.analysis["metrics"]
        rec["curation"] = _curation_fields(it, "rejected")
        if it.detail:
            rec["curation"]["detail"] = it.detail
        rej_lines.append(dumps_record(rec))
    for b in bad_lines:
        rej_lines.append(dumps_record({"line": b["line"], "record": b["record"],
                                       "curation": {"status": "rejected", "score": 0.0,
                                                    "reasons": b["reasons"], "duplicate_of": None}}))
    # the whole decision is global, so each file is rewritten atomically: a crash leaves the old one
    write_bytes_atomic(dst.root / REJECTED_NAME, "".join(line + "\n" for line in rej_lines).encode())
    write_bytes_atomic(dst.manifest_path, "".join(dumps_record(r) + "\n" for r in kept_recs).encode())
    dst.write_info(command=current_command(), config_key=CONFIG_KEY, config=run_config, records=kept_recs,
                   extra={"curation": res.counts()})
