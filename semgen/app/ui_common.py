"""What every tab shares: the status line's error text, the handler guard, the folder row.

Every handler goes through :func:`guard`: a :class:`~semgen.errors.SemgenError` (bad input) becomes
a one-line message in the tab's status line, anything else a one-line "unexpected error" (the
traceback goes to the server log), and the server keeps running either way.
"""

from __future__ import annotations

import functools
import logging
import os
import traceback

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio loads: nothing phones home

import gradio as gr  # noqa: E402

from ..errors import SemgenError  # noqa: E402

log = logging.getLogger("semgen.app")

CSS = """
.semgen-status strong { color: #b42318; }
footer { display: none !important; }
"""


def error_text(e: BaseException) -> str:
    """The status line for an exception: the message of a user error, one line for anything else."""
    if isinstance(e, SemgenError):
        return f"**Error:** {md_escape(str(e))}"
    log.error("unexpected error in the app:\n%s", traceback.format_exc())
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return f"**Unexpected error:** {type(e).__name__}: {md_escape(first)} (details in the server log)"


def md_escape(text: str) -> str:
    """Text that Markdown shows as written (paths hold underscores and asterisks)."""
    for ch in "\\`*_{}[]<>|#":
        text = text.replace(ch, "\\" + ch)
    return text


def guard(n_outputs: int):
    """Wrap a handler whose first output is the status line: an error goes there, other outputs stay."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - the page reports it; the server must keep running
                return [error_text(e)] + [gr.skip()] * (n_outputs - 1)

        return inner

    return wrap


# -- 2. dataset browser --------------------------------------------------------------------------

def folder_row(choices: list[str], label: str, prefix: str):
    """A folder field (the given folders offered, any other typed in), its Open button and the tab's
    status line; elem_ids ``PREFIX-folder``, ``PREFIX-open``, ``PREFIX-status``."""
    with gr.Row():
        folder = gr.Dropdown(choices, value=choices[0] if choices else None, allow_custom_value=True,
                             label=label, elem_id=f"{prefix}-folder", scale=5)
        open_btn = gr.Button("Open", elem_id=f"{prefix}-open", scale=1, min_width=80)
    status = gr.Markdown(elem_id=f"{prefix}-status", elem_classes="semgen-status")
    return folder, open_btn, status
