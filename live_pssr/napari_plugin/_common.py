"""What both widgets share: the model and engine choices, and how a failure is told to the user."""

from __future__ import annotations

import logging

from ..errors import LivePSSRError

log = logging.getLogger("live_pssr.napari")


def model_choices() -> list[str]:
    """Shipped and user models (``$LIVE_PSSR_MODELS``) by name; a path can be typed instead."""
    from ..modelio import DEFAULT_MODEL, available_models

    names = available_models()
    return sorted(names, key=lambda n: (n != DEFAULT_MODEL, n))


def engine_choices() -> list[str]:
    """``auto`` (fastest correct engine here) first, then every registered engine."""
    from ..engines import available_engines

    return ["auto", *available_engines()]


def error_text(err: BaseException) -> str:
    """One line for the user: a live-pssr error's message and fix, else the exception's type and text."""
    if isinstance(err, LivePSSRError):
        return f"{err.message} (fix: {err.hint})" if err.hint else err.message
    return f"{type(err).__name__}: {err}"


def report_error(what: str, err: BaseException | str) -> str:
    """Show that ``what`` failed in napari's notifications and the log; return the text shown."""
    from napari.utils.notifications import show_error

    text = f"{what}: {err if isinstance(err, str) else error_text(err)}"
    log.error("%s", text, exc_info=isinstance(err, BaseException) and not isinstance(err, LivePSSRError))
    show_error(text)
    return text
