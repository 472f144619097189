"""semgen.parallel: one ordered map, the same results whatever the workers, chunking or backend."""

from __future__ import annotations

import pytest

from semgen.parallel import InProcess, LocalPool, map_items, ordered_map


class Recording(InProcess):
    """A backend that runs in this process and records what it was asked (a stand-in for Ray)."""

    def __init__(self):
        self.calls = []

    def map(self, fn, chunks, window):
        self.calls.append(window)
        yield from super().map(fn, chunks, window)


def test_ordered_map_results_do_not_depend_on_where_it_runs():
    chunks = [list(range(k, k + 5)) for k in range(0, 60, 5)]
    want = [sum(c) for c in chunks]
    assert list(ordered_map(sum, chunks, workers=1)) == want
    assert list(ordered_map(sum, iter(chunks), workers=2, window=3)) == want
    assert list(ordered_map(sum, chunks, workers=1, force_pool=True)) == want
    rec = Recording()
    assert list(ordered_map(sum, chunks, workers=8, backend=rec)) == want and rec.calls == [32]
    assert list(LocalPool(2).map(sum, iter(chunks), 2)) == want


@pytest.mark.parametrize("workers, chunksize", [(1, None), (2, None), (2, 1), (2, 7), (3, 100)])
def test_map_items_is_map(workers, chunksize):
    items = list(range(-50, 50))
    assert list(map_items(abs, items, workers=workers, chunksize=chunksize)) == [abs(x) for x in items]


def test_map_items_over_a_backend_and_below_the_pool_threshold():
    rec = Recording()
    items = list(range(-20, 20))
    assert list(map_items(abs, items, workers=4, backend=rec)) == [abs(x) for x in items] and rec.calls
    # few items run in this process without asking any backend-less pool
    assert list(map_items(abs, items[:3], workers=4, serial_below=32)) == [20, 19, 18]


def test_a_failing_task_raises_in_the_consumer():
    with pytest.raises(TypeError):
        list(ordered_map(sum, [[1], ["a", 1]], workers=2))


def test_a_pool_started_early_is_the_one_the_map_uses():
    # semgen procedural / curate start the fork server before their own imports
    from multiprocessing import forkserver

    from semgen.parallel import start_pool_early

    start_pool_early(["semgen.seeding"])
    pid = forkserver._forkserver._forkserver_pid
    assert pid is not None
    start_pool_early(["semgen.seeding"])  # again: nothing new
    items = list(range(-40, 40))
    assert list(map_items(abs, items, workers=2, serial_below=2, preload=["semgen.seeding"])) == [abs(i) for i in items]
    assert forkserver._forkserver._forkserver_pid == pid
