"""Errors that name the problem and the fix.

Every error live-pssr raises on bad input derives from :class:`LivePSSRError` and carries a
``hint`` (what the user should do). The CLI prints ``message`` then ``hint`` and exits non-zero;
library callers can catch the specific subclass.
"""

from __future__ import annotations


class LivePSSRError(Exception):
    """Base class: ``str(err)`` is the problem, ``err.hint`` the fix."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class FrameFormatError(LivePSSRError, TypeError):
    """A frame has a dtype or dimensionality live-pssr cannot store losslessly."""


class FrameShapeError(LivePSSRError, ValueError):
    """A frame's size differs from the run's first frame (ROI or binning changed mid-run)."""


class ModelFileError(LivePSSRError, ValueError):
    """A model file is missing, corrupt, or does not fit the data."""


class StoreExistsError(LivePSSRError, FileExistsError):
    """The output store already exists and overwriting was not asked for."""


class StoreWriteError(LivePSSRError, OSError):
    """Writing the store failed (disk full, read-only, removed): the run stops cleanly."""


class StoreFormatError(LivePSSRError, ValueError):
    """A path is not a live-pssr store (or an unreadable one)."""


class EngineUnavailableError(LivePSSRError, RuntimeError):
    """An inference engine cannot run here (no GPU, package missing, failed correctness gate)."""


class ConfigError(LivePSSRError, ValueError):
    """A configuration file or value does not validate."""


class DiskFullError(StoreWriteError):
    """The store's disk is full: the run stops taking frames; queued frames go into the reserve."""


class EnhancementError(LivePSSRError, ValueError):
    """The model produced an unusable output for a frame (NaN/Inf): the frame is marked failed."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal (Ctrl-C, SIGTERM, SIGHUP): handled like Ctrl-C, exit 128 + signal."""

    def __init__(self, signum: int = 2) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
