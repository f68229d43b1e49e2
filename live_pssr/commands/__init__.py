"""One module per CLI command, each exposing ``command`` (see :mod:`live_pssr.cli`)."""
