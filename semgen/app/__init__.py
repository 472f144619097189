"""``semgen app``: a local web app to design generators, browse datasets, read results and classify.

Four pages (Gradio): a generator playground, a dataset browser, results (ablations and runs) and
classify. The logic lives in plain modules (:mod:`.playground`, :mod:`.browser`, :mod:`.results`,
:mod:`.classify`, :mod:`.draw`) that need no web framework; only the `ui*` modules import Gradio, which
comes with the ``app`` extra (``pip install -c constraints.txt -e ".[app]"``).

>>> from semgen.app import build_app          # doctest: +SKIP
>>> build_app(data=["data/proc"], runs=["runs/ft"]).launch()   # doctest: +SKIP
"""

from __future__ import annotations

from ..errors import SemgenError

__all__ = ["build_app", "serve", "require_gradio"]


def require_gradio():
    """Import Gradio, or raise a one-line :class:`SemgenError` naming the extra that installs it."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio loads: nothing phones home
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise SemgenError('semgen app needs the "app" extra: pip install -c constraints.txt -e ".[app]"') from None
    return gradio


def build_app(**kwargs):
    """:func:`semgen.app.ui.build_app` (imports Gradio)."""
    require_gradio()
    from .ui import build_app as _build

    return _build(**kwargs)


def serve(*, data=(), runs=(), host: str = "127.0.0.1", port: int = 7860, block: bool = True, **kwargs):
    """Build the app and serve it on ``host:port`` (localhost by default)."""
    require_gradio()
    from .classify import MAX_UPLOAD_BYTES
    from .ui import build_app as _build
    from .ui import launch

    max_upload = kwargs.get("max_upload_bytes", MAX_UPLOAD_BYTES)
    demo = _build(data=data, runs=runs, **kwargs)
    launch(demo, host=host, port=port, block=block, max_upload_bytes=max_upload)
    return demo
