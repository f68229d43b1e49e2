"""``python -m live_pssr.train --config C.yaml``: the same as ``python -m live_pssr train --config C.yaml``.

Kept for scripts and ``torchrun --nproc_per_node=N -m live_pssr.train ...`` launches. The command
itself lives in the CLI layer (:mod:`live_pssr.commands.train`); this entry point runs the
top-level CLI by module name (no import from the training package up into the CLI), with
``train`` put in front of the arguments.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    sys.argv[1:1] = ["train"]
    runpy.run_module("live_pssr", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
