"""Where an ``u``-times finer image sits over its source in napari's world coordinates.

napari puts a pixel's centre at ``index * scale + translate``. For ``u x u`` pixels of the finer
image (size ``s/u``) to tile exactly one source pixel (size ``s``, centre ``i * s``), finer pixel
``j`` must have its centre at ``(j + 1/2) s/u - s/2``: ``scale = s/u`` and
``translate = -(s/2)(1 - 1/u)`` added to the source's translation, on each spatial (last two) axis.
"""

from __future__ import annotations

from collections.abc import Sequence


def enhanced_translate(pixel_size: float, upscale: int) -> float:
    """``-(s/2)(1 - 1/u)``: the shift of a ``upscale``-times finer image over pixels of ``pixel_size``."""
    return -0.5 * float(pixel_size) * (1.0 - 1.0 / int(upscale))


def finer_geometry(scale: Sequence[float], translate: Sequence[float],
                   upscale: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Scale and translate of a layer ``upscale`` times finer on its last two axes than ``scale``."""
    scale, translate = [float(v) for v in scale], [float(v) for v in translate]
    for ax in (-2, -1):
        translate[ax] += enhanced_translate(scale[ax], upscale)
        scale[ax] /= upscale
    return tuple(scale), tuple(translate)
