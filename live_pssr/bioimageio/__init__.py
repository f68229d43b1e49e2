"""bioimage.io (BioImage Model Zoo): export live-pssr models as packages, and load packages as models.

:func:`export_package` (:mod:`.export`) writes a validated model package (ONNX + PyTorch state-dict
weights, test tensors from the simulator enhanced by the Enhancer, cover, model card, PSSR
citation). The reverse, :func:`load_package`, lives in :mod:`live_pssr.zoo` (modelio's layer)
because :func:`~live_pssr.modelio.load_model` hands it every ``--model`` that is a package;
:func:`run_test_model` runs bioimageio.core's own ``test_model`` on a package.
"""

from __future__ import annotations

from ..zoo import is_package_path, load_package, read_package
from .export import ExportResult, export_package, make_test_tensors
from .importer import run_test_model

__all__ = [
    "ExportResult",
    "export_package",
    "is_package_path",
    "load_package",
    "make_test_tensors",
    "read_package",
    "run_test_model",
]
