"""A guard against a reference-counting bug in some Qt bindings (PySide6 6.12.0 on CPython 3.11).

That binding drops one reference to ``True`` on every ``Signal.emit()`` and to ``None`` on many
void calls (``QTimer.start``, ``QGraphicsItem.update`` ...). On CPython 3.12+ these objects are
immortal and nothing happens; on 3.11 their counts fall by thousands per second while the viewer
runs, and when one reaches zero the interpreter aborts ("bool_dealloc"/"none_dealloc: deallocating
..."), taking the acquisition with it - within a minute of live viewing.

:func:`guard` measures the leak directly (64 emits of a probe signal) and, only if references are
lost, adds ``2**40`` to the counts of ``None``, ``True`` and ``False``: static singletons that are
never freed, so an over-count is harmless and lasts for years at the observed rates. The real fix
is a binding without the bug (PySide6-Essentials 6.11.x, or PyQt6); the warning says so.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys

log = logging.getLogger("live_pssr.viewer")

TOP_UP = 1 << 40
_applied = False


def binding_leaks_references(n: int = 64) -> bool:
    """True if emitting a Qt signal loses references to ``True`` (the buggy bindings)."""
    from qtpy import QtCore

    class _Probe(QtCore.QObject):
        sig = QtCore.Signal()

    probe = _Probe()
    gc.collect()
    before = sys.getrefcount(True)
    for _ in range(n):
        probe.sig.emit()
    lost = before - sys.getrefcount(True)
    probe.deleteLater()
    return lost >= n


def _can_patch() -> bool:
    """CPython release builds only: the count is the first word of the object."""
    return sys.implementation.name == "cpython" and not hasattr(sys, "gettotalrefcount") \
        and sys.version_info < (3, 12)


def guard() -> bool:
    """Protect this process from the binding's lost references; True if it was needed."""
    global _applied
    if _applied:
        return True
    if not _can_patch() or not binding_leaks_references():
        return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += TOP_UP
    _applied = True
    from qtpy import API_NAME, QT_VERSION

    log.warning("%s (Qt %s) loses references to None/True on Qt calls under Python %d.%d, which "
                "would crash the viewer after a while; live-pssr compensates. Install "
                "PySide6-Essentials 6.11.x (or PyQt6) to remove the cause.", API_NAME, QT_VERSION,
                *sys.version_info[:2])
    return True
