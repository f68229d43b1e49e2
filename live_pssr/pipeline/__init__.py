"""The live pipeline (see :mod:`live_pssr.pipeline.pipeline` for the design)."""

from .display import DisplayFrame, DisplaySlot
from .pipeline import LivePipeline, Policy, RunState, StoreSpec
from .stats import PipelineStats, Summary

__all__ = ["DisplayFrame", "DisplaySlot", "LivePipeline", "PipelineStats", "Policy", "RunState", "StoreSpec",
           "Summary"]
