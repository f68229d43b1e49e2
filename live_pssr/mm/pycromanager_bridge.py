"""Run pycromanager's real Python-backend ``Acquisition`` on a pymmcore-plus ``UniMMCore``.

pycromanager (1.0.2) picks its Python backend when ``mmpycorex.launcher._PYMMCORES`` holds a
core, and its acquisition engine calls snake_case core methods (``snap_image``,
``pop_next_tagged_image``...). This module is the only place that touches those two private
internals, so it pins the versions it was verified with and refuses others loudly:

* :class:`SnakeUniMMCore`: a ``UniMMCore`` that also answers snake_case names (resolved at call
  time, so ``UniMMCore``'s Python-device overrides are the ones used);
* :func:`install` / :func:`uninstall` (or the :func:`pycromanager_backend` context manager): make
  a core pycromanager's active core (and its ``Engine`` singleton's), and undo it;
* the core's ``pop_next_tagged_image`` waits half a millisecond on an empty buffer instead of
  letting pycromanager's engine spin on the GIL (which starved the camera thread at 2048²).

Usage::

    core = simulated_core(config, core_class=SnakeUniMMCore)
    with pycromanager_backend(core):
        with Acquisition(directory=None, image_process_fn=session.pycromanager_hook) as acq:
            acq.acquire(multi_d_acquisition_events(num_time_points=100))
"""

from __future__ import annotations

import re
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ConfigError
from ._pymmcore import UniMMCore
from .core import package_versions

#: versions the bridge was verified with (pyproject pins the same)
PINNED = {"pycromanager": "1.0.2", "pymmcore-plus": "0.18.1"}


def check_versions() -> None:
    """Raise :class:`~live_pssr.errors.ConfigError` unless the pinned versions are installed."""
    found = package_versions()
    wrong = {k: found.get(k) for k, v in PINNED.items() if found.get(k) != v}
    if wrong:
        raise ConfigError(
            "the pycromanager bridge relies on private internals of "
            + ", ".join(f"{k}=={v}" for k, v in PINNED.items())
            + "; installed: " + ", ".join(f"{k} {v}" for k, v in wrong.items()),
            "install the pinned versions (pip install " + " ".join(f"{k}=={v}" for k, v in PINNED.items())
            + "), or use pymmcore-plus's MDA with session.connect(core)",
        )


def _snake(name: str) -> str:
    return re.sub("([a-z0-9])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)).lower()


class SnakeUniMMCore(UniMMCore):
    """``UniMMCore`` that also answers pycromanager's snake_case method names."""

    def __getattr__(self, name: str) -> Any:
        camel = _SNAKE.get(name)
        if camel is None:
            raise AttributeError(name)
        return getattr(self, camel)


_SNAKE = {
    _snake(n): n
    for c in SnakeUniMMCore.__mro__
    for n in vars(c)
    if n[:1].islower() and any(ch.isupper() for ch in n)
}


#: how long a pop waits for the camera's next frame before reporting an empty buffer
POP_WAIT_S = 0.0005


def _pop_next_tagged_image(self: Any) -> Any:
    """One pop from the sequence buffer with backend-neutral (dict) metadata.

    pycromanager's engine retries a failed pop at once, in a pure-Python loop that holds the GIL
    between retries and starves every other thread (the camera's, the image processor's, the
    storage's). Waiting ``POP_WAIT_S`` when the buffer is empty turns that spin into a poll; a
    frame that is already there is popped without waiting.
    """
    from mmpycorex import launcher

    if not self.getRemainingImageCount():
        time.sleep(POP_WAIT_S)
    img, md = self.popNextImageAndMD()
    return launcher.TaggedImage(dict(md), img)


def install(core: SnakeUniMMCore) -> None:
    """Make ``core`` the core of pycromanager's Python backend (and of its engine)."""
    check_versions()
    if not isinstance(core, SnakeUniMMCore):
        raise TypeError("pycromanager needs a SnakeUniMMCore: simulated_core(..., core_class=SnakeUniMMCore)")
    from mmpycorex import launcher
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    core.get_tagged_image = types.MethodType(launcher.get_tagged_image, core)
    core.pop_next_tagged_image = types.MethodType(_pop_next_tagged_image, core)
    core.TaggedImage = launcher.TaggedImage
    launcher._PYMMCORES[:] = [core]  # noqa: SLF001 - the backend switch (see module docstring)
    engine = Engine.get_instance()
    if engine is not None:
        engine.core = core
    else:
        Engine(core)


def uninstall() -> None:
    """Forget the active core and shut pycromanager's engine down (its threads end)."""
    from mmpycorex import launcher
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    launcher._PYMMCORES.clear()  # noqa: SLF001
    engine = Engine.get_instance()
    if engine is not None:
        engine.shutdown()
        del Engine.singleton


@contextmanager
def pycromanager_backend(core: SnakeUniMMCore) -> Iterator[SnakeUniMMCore]:
    """``install(core)`` for the duration of a ``with`` block."""
    install(core)
    try:
        yield core
    finally:
        uninstall()
