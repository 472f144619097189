"""Progress of long work: a tqdm bar on a terminal, a plain line now and then in a log.

Every long loop in semgen (training, pretraining, generation, curation, import, diffusion) asks
:func:`progress_bar` for its bar. On a terminal that is a tqdm bar on stderr. Where stderr is a file
or a pipe (``semgen recipe ... > run.log 2>&1 &``, CI, a scheduler), a redrawn bar would be one
ever-growing line of carriage returns, and no bar at all leaves hours of silence; there it is
:class:`LogProgress`: one line in tqdm's own words (count, elapsed, ETA, rate, postfix) every
``every`` seconds, and a last line at the end. Work shorter than ``every`` prints nothing, so short
commands and tests keep a clean stderr.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, TextIO

#: Seconds between two lines of :class:`LogProgress`.
LOG_EVERY_S = 60.0


class LogProgress:
    """The part of tqdm's interface semgen uses, as timed plain lines.

    Parameters
    ----------
    iterable : iterable, optional
        Wrapped as tqdm does: iterating yields its items and counts one each.
    total, initial : int, optional
        Units of the whole work and those done before this call (a resumed run).
    desc, unit : str
        Shown as tqdm shows them.
    every : float
        Seconds between two lines; the first comes ``every`` seconds after the start.
    file : text stream, optional
        Where the lines go (default: ``sys.stderr`` at each write).

    Examples
    --------
    >>> import io
    >>> f = io.StringIO()
    >>> with LogProgress(total=3, desc="train", unit="epoch", every=0, file=f) as bar:
    ...     bar.update(2)
    ...     bar.set_postfix(loss="0.123")
    >>> lines = f.getvalue().splitlines()
    >>> lines[0].startswith("train:  67%") and lines[-1].endswith("loss=0.123]")
    True
    """

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, initial: int = 0,
                 desc: str = "", unit: str = "it", every: float = LOG_EVERY_S, file: TextIO | None = None):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable, self.total, self.initial, self.n = iterable, total, int(initial), int(initial)
        self.desc, self.unit, self.every, self.file = desc, unit, float(every), file
        self.postfix = ""
        self.start_t = self.last_t = time.monotonic()
        self.lines = 0
        self._shown: tuple = ()  # (count, postfix) of the last line
        self.closed = False

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last_t >= self.every:
            self._line(now)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        """``key=value`` pairs after the figures, as tqdm writes them (numbers in tqdm's format)."""
        from tqdm import tqdm

        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={tqdm.format_num(v) if isinstance(v, (int, float)) else str(v).strip()}"
                                 for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def close(self) -> None:
        """A last line, if the work was long enough to have had one."""
        if not self.closed and self.lines and (self.n, self.postfix) != self._shown:
            self._line(time.monotonic())
        self.closed = True

    def _line(self, now: float) -> None:
        from tqdm import tqdm

        # rate over this call's units, as tqdm's own average: a resumed run's earlier units took no time here
        elapsed = now - self.start_t
        done = self.n - self.initial
        text = tqdm.format_meter(self.n, self.total, elapsed, ncols=0, prefix=self.desc, unit=self.unit,
                                 rate=done / elapsed if elapsed > 0 and done > 0 else None,
                                 postfix=self.postfix or None)
        f = self.file or sys.stderr
        f.write(text.strip() + "\n")
        f.flush()
        self.last_t = now
        self.lines += 1
        self._shown = (self.n, self.postfix)


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, initial: int = 0, desc: str = "",
                 unit: str = "it", enabled: bool = True, leave: bool = True, every: float | None = None):
    """The bar of one long loop: tqdm on a terminal, :class:`LogProgress` elsewhere (a line every
    ``every`` seconds, default :data:`LOG_EVERY_S`), silent when not ``enabled`` (``--no-progress``). Both are used the same way: iterate, ``update``, ``set_postfix``,
    ``close`` (or ``with``).

    Examples
    --------
    >>> bar = progress_bar(range(3), desc="x", enabled=False)
    >>> list(bar)
    [0, 1, 2]
    """
    from tqdm.auto import tqdm

    if not enabled:
        return tqdm(iterable, total=total, initial=initial, disable=True)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, leave=leave, file=sys.stderr)
    return LogProgress(iterable, total=total, initial=initial, desc=desc, unit=unit,
                       every=LOG_EVERY_S if every is None else every)
