"""semgen app: how big a dataset dir the browser takes, and how live the playground is.

Prints, for a manifest of N records (one generated record repeated under new names; the browser
reads records, not images, until a page is shown): the time and peak memory to open it, and the
time to draw one page of thumbnails; and the playground's time for one image per class.

    python bench/bench_app.py --records 100000 --size 256

Benchmarks print; tests never assert timings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000, help="manifest records (default 100000)")
    ap.add_argument("--size", type=int, default=256, help="playground image size (default 256)")
    ap.add_argument("--repeats", type=int, default=5, help="playground images per class (default 5)")
    args = ap.parse_args()

    from semgen.app import browser, playground
    from semgen.generators.procedural import create_generator, list_generators
    from semgen.generators.procedural.generation import generate

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as td:
        root = Path(td) / "big"
        generate("bridge", browser.PAGE_SIZE, root, seed=0, size=args.size, progress=False)
        lines = (root / "metadata.jsonl").read_text().splitlines()
        with open(root / "metadata.jsonl", "w") as f:  # the 48 real images, then records that name them again
            for i in range(args.records):
                rec = json.loads(lines[i % len(lines)])
                if i >= len(lines):
                    rec["id"] = f"bridge_{i:07d}"
                f.write(json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n")
        mb = (root / "metadata.jsonl").stat().st_size / 1e6
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        t = time.perf_counter()
        idx = browser.open_index(root)
        t_open = time.perf_counter() - t
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        shown, n_pages = browser.page_slice(browser.filter_positions(idx), 1)
        t = time.perf_counter()
        browser.thumbnails(idx, shown)
        t_page = time.perf_counter() - t
        t = time.perf_counter()
        browser.filter_positions(idx, classes=["bridge"], statuses=[browser.NONE])
        t_filter = time.perf_counter() - t
        t = time.perf_counter()
        browser.records_at(idx, browser.page_slice(browser.filter_positions(idx), n_pages)[0])
        t_last = time.perf_counter() - t
        print(f"browser: {args.records:,} records ({mb:.0f} MB manifest): open {t_open:.1f} s, peak RSS "
              f"+{rss1 - rss0:.0f} MB; a page of {len(shown)} {args.size}-px thumbnails {t_page:.2f} s; "
              f"a filter {t_filter:.3f} s; the records of the last page {t_last:.1f} s")
    for name in list_generators():
        gen = create_generator(name)
        ts = []
        for seed in range(args.repeats):
            t = time.perf_counter()
            playground.render(gen, seed, args.size, {})
            ts.append(time.perf_counter() - t)
        print(f"playground {name:8s} {args.size} px: median {1000 * statistics.median(ts):.0f} ms per image")


if __name__ == "__main__":
    main()
