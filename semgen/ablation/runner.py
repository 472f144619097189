"""Running the matrix: train each cell once (cached by its key), evaluate it on every test set,
write ``results.jsonl`` and the report.

Cache layout (``OUT/cache`` unless the config names a shared one)::

    cache/data/<subset key>/       materialised k-shot / synthetic subsets (dataset dirs)
    cache/cells/<cell key>/run/    the classifier's run dir
    cache/cells/<cell key>/cell.json          written last: the cell is done
    cache/cells/<cell key>/eval-<test key>.json  per-image predictions on one test set
    cache/cells/<cell key>/eval-<test key>-tta-<mode>.json  the same with test-time augmentation
    cache/timing.json              measured seconds per training image, for estimates

A killed run leaves at most one cell without ``cell.json``; its run dir is discarded and that one
cell is trained again. A cache may be shared by several runs at once: each cell is trained under
its own lock (``cache/cells/<cell key>/.semgen.lock``), so a second run that reaches a cell being
trained waits for it and then reuses it. A widened matrix (more seeds, shots, arms, test sets) finds the old cells
by key and trains only the new ones. Test-time augmentation (``tta``) changes the evaluation only: it is
not in the cell keys, so a run with another ``tta`` re-evaluates the cached cells and trains nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from .. import __version__
from ..errors import SemgenError
from ..imageio import write_bytes_atomic
from ..manifests.lock import lock_dir
from ..manifests.ops import check_writable_dir
from .config import SCRATCH, AblationConfig
from .matrix import Cell, plan
from .subsets import Pool, load_pool, write_json_atomic

RESULTS = "results.jsonl"


def _default_train():
    try:
        from ..classifier import train_classifier
    except ImportError as e:
        raise SemgenError(f"the classifier is not available ({e})") from None
    return train_classifier


def _default_eval():
    try:
        from ..classifier import evaluate_run
    except ImportError as e:
        raise SemgenError(f"the classifier is not available ({e})") from None
    return evaluate_run


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- timing -------------------------------------------------------------------------------------
def _timing_path(cache: Path) -> Path:
    return cache / "timing.json"


def _timing_key(hyper: dict) -> str:
    return f"{hyper.get('arch', 'default')}@{hyper.get('size', 128)}/b{hyper.get('batch_size', 64)}"


def _record_timing(cache: Path, hyper: dict, work: float, wall: float, cpu: float) -> None:
    """Remember (training images drawn, wall seconds, CPU seconds) of a finished cell, for estimates."""
    p = _timing_path(cache)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        data = {}
    rows = data.setdefault(_timing_key(hyper), [])
    rows.append([float(work), float(wall), float(cpu)])
    data[_timing_key(hyper)] = rows[-50:]
    write_json_atomic(p, data)


def _fit(rows, col: int = 1) -> tuple[float, float] | None:
    """Least-squares ``seconds = a + b * work`` (a >= 0) on column ``col``, or None without data."""
    import numpy as np

    rows = [r for r in rows if len(r) > col]
    if not rows:
        return None
    x = np.array([r[0] for r in rows], float)
    y = np.array([r[col] for r in rows], float)
    if len(rows) == 1 or np.ptp(x) == 0:
        return 0.0, float(y.mean() / max(x.mean(), 1.0))
    b, a = np.polyfit(x, y, 1)
    if a < 0 or b <= 0:
        return 0.0, float((y / np.maximum(x, 1.0)).mean())
    return float(a), float(b)


def estimate_seconds(cells: list[Cell], cache: Path, todo: list[Cell], probe: Callable[[dict], dict] | None = None,
                     evals: list[tuple[Cell, int]] = ()):
    """Expected time of the cells still to train and of the evaluations still to run.

    Returns ``(wall_s, free_s, basis)``: ``wall_s`` at the speed measured (the machine's load
    included), ``free_s`` from the CPU time measured, spread over all cores (what an unshared
    machine would take). Training speed comes from this cache's earlier cells where there are any,
    else from ``probe`` (a one-epoch training on the smallest subset). ``evals`` lists the missing
    evaluations as ``(cell, image views)`` (test images x test-time augmentation views): they cost
    the seconds per view measured in this cache's evaluations of the same arch and size, else a
    third of a training image (a forward pass without the backward one).
    """
    try:
        data = json.loads(_timing_path(cache).read_text())
    except (OSError, ValueError):
        data = {}
    wall, cpu, basis = 0.0, 0.0, set()
    probed: dict[str, dict] = {}
    cores = max(1, os.cpu_count() or 1)

    def train_speed(c: Cell):
        """``(wall fit, cpu fit, where from)`` of training ``c``'s arch and size: measured cells, else the probe."""
        k = _timing_key(c.hyper)
        fw, fc = _fit(data.get(k, []), 1), _fit(data.get(k, []), 2)
        if fw is not None:
            return fw, fc, f"{len(data[k])} measured cells"
        if k not in probed and probe is not None:
            probed[k] = probe(c.hyper)
        return probed.get(k, {}).get("wall"), probed.get(k, {}).get("cpu"), "one-epoch probe"

    for c in todo:
        fw, fc, source = train_speed(c)
        if fw is None:
            return None, None, "no timing known"
        basis.add(f"{_timing_key(c.hyper)}: {source}")
        wall += fw[0] + fw[1] * c.work
        if fc is not None:
            cpu += fc[0] + fc[1] * c.work
    per_view = _eval_speeds(cache) if evals else {}
    measured = set(per_view)  # the keys a third of a training image stands in for are added below
    eval_s = 0.0
    for c, views in evals:
        k = _timing_key(c.hyper)
        if k in measured:
            basis.add(f"{k} evaluation: measured")
        else:
            fw = train_speed(c)[0]
            if fw is None:
                return None, None, "no timing known"
            per_view[k] = fw[1] / 3
            basis.add(f"{k} evaluation: a third of a training image")
        eval_s += per_view[k] * views
    # an evaluation runs in one process on all cores: its wall time is also its free-core time
    # (no CPU time known for the training: no free-core figure, unless there is nothing to train)
    return wall + eval_s, (cpu / cores + eval_s if cpu or not todo else None), "; ".join(sorted(basis))


def _eval_path(cdir: Path, test: Pool, tta: str) -> Path:
    # keyed on tta too, so that evaluations with and without it never stand in for each other;
    # without it the name it always had, so existing caches are still found
    return cdir / (f"eval-{test.key[:24]}.json" if tta == "none" else f"eval-{test.key[:24]}-tta-{tta}.json")


def _eval_speeds(cache: Path) -> dict[str, float]:
    """Median wall seconds per evaluated image view, per timing key, over every evaluation in the cache."""
    from ..classifier.tta import TTA_MODES

    seen: dict[str, list[float]] = {}
    for cj in (cache / "cells").glob("*/cell.json"):
        try:
            key = _timing_key(json.loads(cj.read_text())["config"]["classifier"])
            for p in cj.parent.glob("eval-*.json"):
                ev = json.loads(p.read_text())
                views = len(ev["y_true"]) * len(TTA_MODES[ev.get("tta", "none")])
                if ev.get("eval_s") and views:
                    seen.setdefault(key, []).append(float(ev["eval_s"]) / views)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a torn or older file: it only informs an estimate
    return {k: sorted(v)[len(v) // 2] for k, v in seen.items()}


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{(s % 3600) // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# -- evaluation ---------------------------------------------------------------------------------
def _align(metrics: dict, test: Pool) -> dict:
    """Per-image predicted labels, in the test pool's order, from ``evaluate_run``'s output."""
    classes = list(metrics["classes"])
    pred_by_file = {}
    for f, p in zip(metrics["files"], metrics["y_pred"]):
        pred_by_file[os.path.realpath(f)] = classes[int(p)]
    files, y_true, y_pred = [], [], []
    root = Path(test.root)
    missing = 0
    for it in test.items:
        rp = os.path.realpath(it.path)
        files.append(Path(it.path).relative_to(root).as_posix())
        y_true.append(it.label)
        if rp in pred_by_file:
            y_pred.append(pred_by_file[rp])
        else:
            y_pred.append("")  # unreadable image: skipped by the classifier, scored as wrong
            missing += 1
    return {"files": files, "y_true": y_true, "y_pred": y_pred, "skipped": missing}


def _predictions_csv(ev: dict) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "label", "pred"])
    for row in zip(ev["files"], ev["y_true"], ev["y_pred"]):
        w.writerow(row)
    return buf.getvalue().encode()


# -- the run ------------------------------------------------------------------------------------
def _check_tuned_references(cfg, sources: dict, tests: dict) -> None:
    """Raise if a test set shares images with the reference a synthetic source's profile was tuned on."""
    from ..generators.procedural.profile import tuned_reference_files

    for sname in sources:
        for prof_sha, files in tuned_reference_files(cfg.sources[sname].path).items():
            for name, t in tests.items():
                shared = files & {i.sha256 for i in t.items}
                if shared:
                    raise SemgenError(f"test set {name} shares {len(shared)} image(s) with the reference that the "
                                      f"profile {prof_sha[:12]} of synthetic source {sname} was tuned on")


def run_ablation(cfg: AblationConfig, out, *, train_fn: Callable | None = None, eval_fn: Callable | None = None,
                 log: Callable[[str], None] = _log, estimate_only: bool = False, max_seconds: float | None = None,
                 warn_seconds: float | None = None, progress: bool = False, backend=None) -> dict:
    """Run (or resume) the experiment matrix into ``out`` and write its report.

    Parameters
    ----------
    cfg : the checked configuration
    out : output dir (created): ``results.jsonl``, ``summary.md``, ``summary.json``, plots, ``cache/``
    train_fn, eval_fn : ``semgen.classifier.train_classifier`` / ``evaluate_run`` by default; a test
        passes doubles with the same signatures
    estimate_only : plan, state the expected time, and stop before training
    max_seconds : refuse to start if the estimate exceeds it (used by ``--preset quick``)
    backend : train the cells as tasks there (:func:`semgen.parallel.make_backend`, ``--executor
        ray``), as many at once as it has workers, a cell after its init cell; the evaluations and
        the report stay here. Not part of the config: the cells and results are the same.

    Returns
    -------
    dict: ``cells`` (number), ``trained`` (this call), ``reused``, ``estimate_s``, ``wall_s``, ``out``
    """
    t0 = time.perf_counter()
    out = check_writable_dir(Path(out))  # a one-line error for a file or read-only out, not a traceback
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cfg.cache) if cfg.cache else out / "cache"
    check_writable_dir(cache, "the cache")  # cfg.cache may point anywhere
    (cache / "cells").mkdir(parents=True, exist_ok=True)
    train_fn = train_fn or _default_train()
    eval_fn = eval_fn or _default_eval()

    with lock_dir(out):  # one ablate per output dir (semgen.manifests.lock; a dead holder's lock is taken over)
        uses_real = any(a.uses_real for a in cfg.arms)
        real = load_pool(cfg.real, what="real pool") if uses_real else None
        sources = {n: load_pool(s.path, source=n, what=f"synthetic source {n}") for n, s in cfg.sources.items()
                   if any(a.source == n for a in cfg.arms)}
        tests = {n: load_pool(p, what=f"test set {n}") for n, p in cfg.tests.items()}
        val_key = load_pool(cfg.val, what="validation set").key if cfg.val else None
        if cfg.val:
            val_sha = {i.sha256 for i in load_pool(cfg.val).items}
            for name, t in tests.items():
                if val_sha & {i.sha256 for i in t.items}:
                    raise SemgenError(f"the validation set shares images with test set {name}: "
                                      "model selection would see the test")
        if real is not None:
            for name, t in tests.items():
                overlap = {i.sha256 for i in real.items} & {i.sha256 for i in t.items}
                if overlap:
                    raise SemgenError(f"test set {name} shares {len(overlap)} image(s) with the real training pool")
        _check_tuned_references(cfg, sources, tests)
        cells = plan(cfg, real, sources, cache, val_key)
        todo = [c for c in cells if not _done(cache, c)]
        log(f"ablate: {len(cells)} cells ({len(cells) - len(todo)} cached, {len(todo)} to train), "
            f"{len(cfg.seeds)} seeds, arms: {', '.join(a.name for a in cfg.arms)}; "
            + (f"inits: {', '.join(i.name for i in cfg.inits)}; " if cfg.inits != [SCRATCH] else "") +
            f"test: {', '.join(f'{n} ({len(t.items)} images)' for n, t in tests.items())}"
            + (f"; test-time augmentation: {cfg.tta}" if cfg.tta != "none" else ""))

        def probe(hyper):
            smallest = min(cells, key=lambda c: c.n_train)
            with tempfile.TemporaryDirectory(dir=cache) as td:
                hp = {**hyper, "epochs": 1}
                hp.pop("head_only_epochs", None)
                t, c0 = time.perf_counter(), time.process_time()
                summ = train_fn([(p.dir, p.weight) for p in smallest.parts], Path(td) / "run", seed=0,
                                progress=False, **hp) or {}
                wall, cpu = time.perf_counter() - t, time.process_time() - c0
            n = max(smallest.work / max(smallest.epochs, 1), 1.0)
            ips = float(summ.get("images_per_s") or 0)
            # split the probe into fixed overhead (loading, model) and per-image cost
            a = max(wall - n / ips, 0.0) if ips > 0 else 0.0
            frac = a / wall if wall > 0 else 0.0
            return {"wall": (a, (wall - a) / n), "cpu": (cpu * frac, cpu * (1 - frac) / n)}

        from ..classifier.tta import TTA_MODES

        missing = [(c, len(t.items) * len(TTA_MODES[cfg.tta])) for c in cells for t in tests.values()
                   if not _eval_path(cache / "cells" / c.key[:24], t, cfg.tta).exists()]
        est, est_free, basis = ((0.0, 0.0, "nothing to train or evaluate") if not (todo or missing)
                                else estimate_seconds(cells, cache, todo, probe, missing))
        if not todo:
            log("ablate: every cell is cached; " + (f"{len(missing)} evaluation(s) to run, then " if missing else "")
                + "rewriting the report")
        if (todo or missing) and est is not None:
            free = f", about {_fmt_s(est_free)} on {os.cpu_count()} free cores" if est_free else ""
            log(f"ablate: expected time for {len(todo)} cells and {len(missing)} evaluations: about {_fmt_s(est)} "
                f"at the measured speed{free} (from {basis}; early stopping can make it shorter)")
        if warn_seconds is not None and est is not None and est > warn_seconds:
            log(f"ablate: warning: the estimate is over {_fmt_s(warn_seconds)}; fewer sources or smaller "
                "amounts would make it faster")
        if estimate_only:
            return {"cells": len(cells), "trained": 0, "reused": len(cells) - len(todo), "evaluations": len(missing),
                    "estimate_s": est,
                    "estimate_free_s": est_free, "wall_s": time.perf_counter() - t0, "out": str(out)}
        if max_seconds is not None and est is not None and est > max_seconds:
            raise SemgenError(f"this matrix would take about {_fmt_s(est)}, over the {_fmt_s(max_seconds)} the "
                              "preset allows; make it smaller (fewer sources, smaller amounts) or use --preset full")

        write_json_atomic(out / "config.json", {**cfg.to_dict(), "semgen_version": __version__,
                                                "cells": len(cells), "cache": str(cache)})
        trained = 0
        done_lines: list[dict] = []
        remote = _train_on_backend(cells, cache, train_fn, backend, log, progress) if backend is not None else set()
        for i, cell in enumerate(cells, 1):
            cdir = cache / "cells" / cell.key[:24]
            fresh = cell.key in remote
            if fresh:
                log(f"[{i}/{len(cells)}] trained {cell.label()} on the backend")
                trained += 1
            elif not _done(cache, cell):
                # One process per cell, whoever else shares the cache: a second run waits here for
                # the first to finish the cell, then reuses it (it used to delete the first's run dir).
                waited = lambda pid, c=cell, i=i: log(  # noqa: E731
                    f"[{i}/{len(cells)}] waiting for {c.label()}: another ablate (pid {pid or 'unknown'}) "
                    "is training it in the shared cache")
                with lock_dir(cdir, wait=math.inf, on_wait=waited):
                    fresh = not _done(cache, cell)
                    if fresh:
                        if cell.init is not None and not _done(cache, cell.init):
                            raise SemgenError(f"internal: {cell.label()} runs before its pretraining cell")
                        log(f"[{i}/{len(cells)}] train {cell.label()} ({cell.n_train} images, {cell.epochs} epochs)")
                        t_cell, c_cell = time.perf_counter(), time.process_time()
                        _train_cell(cell, cache, train_fn, progress)
                        # the measured cost of training a cell, for estimates (evaluations are timed apart)
                        _record_timing(cache, cell.hyper, cell.work, time.perf_counter() - t_cell,
                                       time.process_time() - c_cell)
                        trained += 1
            if not fresh:
                log(f"[{i}/{len(cells)}] cached {cell.label()}")
            evals = {name: _evaluate_cell(cell, cdir, name, test, eval_fn, cfg.tta) for name, test in tests.items()}
            done_lines.append(_result_line(cell, cdir, evals, out, cfg.tta))
            _write_results(out, done_lines)
            m = {n: f"{e['metrics']['macro_f1']:.3f}" for n, e in evals.items()}
            log(f"[{i}/{len(cells)}]   macro-F1 {m}")
        from .report import write_report

        write_report(out, bootstrap_n=cfg.bootstrap["n"], bootstrap_seed=cfg.bootstrap["seed"])
    wall = time.perf_counter() - t0
    log(f"ablate: done in {_fmt_s(wall)}: trained {trained}, reused {len(cells) - trained}; "
        f"report in {out / 'summary.md'}")
    return {"cells": len(cells), "trained": trained, "reused": len(cells) - trained, "estimate_s": est,
            "estimate_free_s": est_free, "wall_s": wall, "out": str(out)}


def _done(cache: Path, cell: Cell) -> bool:
    return (cache / "cells" / cell.key[:24] / "cell.json").exists()


def _train_cell(cell: Cell, cache: Path, train_fn, progress: bool) -> None:
    """Train one cell into ``cache/cells/<key>``; the caller holds that dir's lock."""
    cdir = cache / "cells" / cell.key[:24]
    write_json_atomic(cdir / "cell.json", CellTask(train_fn, progress)(_cell_job(cell, cache)))


def _cell_job(cell: Cell, cache: Path) -> dict:
    """What training ``cell`` takes: paths and settings only, so that it can run in another process."""
    cdir = cache / "cells" / cell.key[:24]
    kwargs = dict(cell.hyper)
    if cell.val:
        kwargs["val"] = cell.val
    if cell.init is not None:  # fine-tune the model of its init cell (which started from the init)
        kwargs["init"] = str(_checkpoint(cache / "cells" / cell.init.key[:24] / "run"))
    elif not cell.spec.init.scratch:  # a first-stage cell of the init axis: imagenet, semgen, a path
        kwargs["init"] = cell.spec.init.init
    else:
        kwargs.pop("head_only_epochs", None)
    return {"key": cell.key, "config": cell.config, "cdir": str(cdir), "cwd": os.getcwd(), "seed": cell.spec.seed,
            "data": [(p.dir, p.weight) for p in cell.parts], "kwargs": kwargs}


class CellTask:
    """Trains a cell from its :func:`_cell_job` and returns its ``cell.json`` (the caller writes it, last).

    A callable object, so that a backend's worker can run it (``run_ablation(backend=...)``). It
    writes the run dir itself, at the job's path: a worker on another machine needs the cache
    and the data at the same paths (a shared filesystem). A task run again (a lost worker) starts
    the run dir afresh.
    """

    def __init__(self, train_fn, progress: bool = False):
        self.train_fn, self.progress = train_fn, progress

    def __call__(self, job: dict) -> dict:
        # the job's paths may be relative to the directory semgen was started in (runs/ablate-x)
        here = os.getcwd()
        os.chdir(job.get("cwd", here))
        try:
            return self._train(job)
        finally:
            os.chdir(here)

    def _train(self, job: dict) -> dict:
        cdir = Path(job["cdir"])
        missing = [d for d, _ in job["data"] if not Path(d).exists()] + \
            [job["kwargs"][k] for k in ("val", "init") if k in job["kwargs"] and os.sep in str(job["kwargs"][k])
             and not Path(job["kwargs"][k]).exists()]
        if missing or not cdir.parent.is_dir():
            import socket

            raise SemgenError(f"on {socket.gethostname()}: {missing[0] if missing else cdir.parent} does not exist; "
                              "ablation cells on other machines need the data and the cache at the same paths "
                              "(a shared filesystem)")
        run_dir = cdir / "run"
        # a killed cell's run (under the cell's lock, so no one else's): semgen train continues it
        # after its last saved epoch, to the weights it would have had, or starts it anew
        cdir.mkdir(parents=True, exist_ok=True)
        t, cpu = time.perf_counter(), time.process_time()
        summary = self.train_fn(job["data"], run_dir, seed=job["seed"], progress=self.progress, **job["kwargs"])
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        summary = {k: v for k, v in dict(summary or {}).items() if _jsonable(v)}
        return {"key": job["key"], "config": job["config"], "summary": summary,
                "train_s": round(wall, 3), "train_cpu_s": round(cpu, 3),
                "load_avg": round(os.getloadavg()[0], 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _stages(todo: list[Cell]) -> list[list[Cell]]:
    """``todo`` in waves: a cell comes after the wave that trains its init cell (plan order within each)."""
    level: dict[str, int] = {}
    for c in todo:  # the plan lists an init cell before the cells that start from it
        level[c.key] = level[c.init.key] + 1 if c.init is not None and c.init.key in level else 0
    return [[c for c in todo if level[c.key] == k] for k in range(max(level.values(), default=-1) + 1)]


def _train_on_backend(cells: list[Cell], cache: Path, train_fn, backend, log, progress: bool) -> set[str]:
    """Train the cells not yet done as tasks of ``backend``, wave by wave; returns the keys trained.

    Each cell is trained under its lock (held by this process from when its task is sent until its
    ``cell.json`` is written), as in a local run, so a run sharing the cache waits for it, and a
    cell another run finished meanwhile is not sent. The results come back in plan order and
    only this process writes ``cell.json``, so a task that a lost worker ran twice counts once.
    """
    import collections
    import contextlib

    from ..parallel import ordered_map

    task, trained = CellTask(train_fn, progress), set()
    workers = max(1, int(getattr(backend, "workers", 1)))
    for wave in _stages([c for c in cells if not _done(cache, c)]):
        with contextlib.ExitStack() as stack:
            sent: collections.deque = collections.deque()

            def jobs():
                for cell in wave:
                    cdir = cache / "cells" / cell.key[:24]
                    lock = contextlib.ExitStack()
                    stack.enter_context(lock)
                    lock.enter_context(lock_dir(cdir, wait=math.inf, on_wait=lambda pid, c=cell: log(
                        f"waiting for {c.label()}: another ablate (pid {pid or 'unknown'}) is training it")))
                    if _done(cache, cell):  # another run finished it while this one waited
                        lock.close()
                        continue
                    sent.append((cell, lock))
                    log(f"send {cell.label()} ({cell.n_train} images, {cell.epochs} epochs)")
                    yield _cell_job(cell, cache)

            for info in ordered_map(task, jobs(), backend=backend, window=2 * workers):
                cell, lock = sent.popleft()
                write_json_atomic(cache / "cells" / cell.key[:24] / "cell.json", info)
                lock.close()
                trained.add(cell.key)
                if "resumed_after_epoch" not in info["summary"]:  # a continued run's time is not a cell's
                    _record_timing(cache, cell.hyper, cell.work, info["train_s"], info["train_cpu_s"])
    return trained


def _checkpoint(run_dir: Path) -> Path:
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).exists():
            return run_dir / name
    return run_dir


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _evaluate_cell(cell: Cell, cdir: Path, name: str, test: Pool, eval_fn, tta: str = "none") -> dict:
    path = _eval_path(cdir, test, tta)
    if path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass  # torn by a crash: evaluate again
    t = time.perf_counter()
    m = eval_fn(str(cdir / "run"), test.root, n_boot=0, write=False, tta=tta)
    ev = _align(m, test)
    from .stats import point_metrics

    scored = sorted(set(ev["y_true"]))
    ev["metrics"] = point_metrics(ev["y_true"], ev["y_pred"], [c for c in _taxonomy_order(scored)])
    ev["test_key"] = test.key
    if tta != "none":
        ev["tta"] = tta
    ev["eval_s"] = round(time.perf_counter() - t, 3)
    write_json_atomic(path, ev)
    return ev


def _taxonomy_order(labels):
    from ..taxonomy import CLASSES

    return [c for c in CLASSES if c in set(labels)]


def _result_line(cell: Cell, cdir: Path, evals: dict, out: Path, tta: str = "none") -> dict:
    info = json.loads((cdir / "cell.json").read_text())
    spec = cell.spec
    tests = {}
    for name, ev in evals.items():
        rel = f"predictions/{cell.key[:24]}__{name}.csv"
        p = out / rel
        data = _predictions_csv(ev)
        if not p.exists() or p.read_bytes() != data:
            write_bytes_atomic(p, data)
        m = ev["metrics"]
        tests[name] = {"test_key": ev["test_key"], "n_images": len(ev["files"]), "skipped": ev.get("skipped", 0),
                       "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "per_class": m["per_class"],
                       "predictions": rel}
    return {
        "cell": cell.key, "arm": spec.arm.name, "kind": spec.arm.kind, "source": spec.arm.source,
        "ratio": spec.arm.ratio, "shots": spec.shots_label, "seed": spec.seed,
        "implied": bool(cell.config.get("implied")),
        "train": [{"role": p.role, "name": p.name, "weight": p.weight, "n_images": p.n_images,
                   "class_counts": p.class_counts, "subset_key": p.key, "dir": p.dir} for p in cell.parts],
        "init_cell": cell.init.key if cell.init else None,
        "init": spec.init.name, "init_weights": cell.config.get("init_weights") or (cell.init.config.get("init_weights") if cell.init else None),
        "classifier": cell.hyper, "semgen_version": __version__,
        "train_summary": info.get("summary", {}), "train_s": info.get("train_s"),
        "train_cpu_s": info.get("train_cpu_s"), "load_avg": info.get("load_avg"),
        "run_dir": str(cdir / "run"), "test": tests,
        **({"tta": tta} if tta != "none" else {}),  # a line without it was evaluated without TTA
    }


def _write_results(out: Path, lines: list[dict]) -> None:
    # Rewritten whole each time (atomically): it lists exactly the cells of this matrix, in order.
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in lines).encode()
    write_bytes_atomic(out / RESULTS, data)
