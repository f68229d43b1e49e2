"""Benchmarks: one module per ``live-pssr bench`` sub-command, each exposing ``command``.

Shared helpers (:mod:`live_pssr.bench.report`) print a rich table and write JSON rows with the
machine description, so numbers always say where they were measured.
"""
