"""``python -m live_pssr ...``: the ``live-pssr`` command (also what ``torchrun -m live_pssr train`` runs)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
