"""Every ``Examples`` section in semgen's docstrings runs and prints what it says.

The examples are the first thing a reader copies (numpydoc, as scikit-image writes them); run as
doctests they cannot drift from the code.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import semgen

# the remote-code pipeline file of the bundled diffusion model is loaded by diffusers from its
# folder, not imported as part of the package
_NOT_MODULES = ("semgen.generators.diffusion.default_model",)


def _modules() -> list[str]:
    names = []
    for m in pkgutil.walk_packages(semgen.__path__, "semgen."):
        if not m.name.startswith(_NOT_MODULES):
            names.append(m.name)
    return sorted(names)


def _with_examples() -> list[str]:
    """Modules whose source holds a doctest prompt (importing every module would be slow)."""
    out = []
    for name in _modules():
        spec = importlib.util.find_spec(name)
        if spec and spec.origin and spec.origin.endswith(".py"):
            with open(spec.origin, encoding="utf-8") as f:
                if ">>> " in f.read():
                    out.append(name)
    return out


@pytest.mark.parametrize("name", _with_examples())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    res = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples in {name} fail (python -m pytest --doctest-modules {module.__file__})"
