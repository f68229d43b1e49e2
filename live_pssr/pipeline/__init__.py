"""The live pipeline (see :mod:`live_pssr.pipeline.pipeline` for the design)."""

from .display import DisplayFrame, DisplaySlot
from .pipeline import LivePipeline, Policy, StoreSpec
from .stats import PipelineStats, Summary

__all__ = ["DisplayFrame", "DisplaySlot", "LivePipeline", "PipelineStats", "Policy", "StoreSpec", "Summary"]
