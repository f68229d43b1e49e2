"""OME-Zarr v0.5 metadata (multiscales, bioformats2raw collection, OME-XML) for a run store."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

OME_VERSION = "0.5"
RAW, ENHANCED, CONSISTENCY = "0", "1", "2"
#: the images of a run store, by path (``2`` only when the run had the consistency check on)
IMAGE_NAMES = {RAW: "raw", ENHANCED: "enhanced", CONSISTENCY: "consistency"}


def axes() -> list[dict[str, str]]:
    return [
        {"name": "t", "type": "time", "unit": "second"},
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]


def image_attrs(name: str, pixel_size_um: float, frame_interval_s: float) -> dict[str, Any]:
    """Group attributes of one image (one resolution level, path ``0``)."""
    scale = [frame_interval_s or 1.0, 1.0, pixel_size_um, pixel_size_um]
    return {
        "ome": {
            "version": OME_VERSION,
            "multiscales": [
                {
                    "name": name,
                    "axes": axes(),
                    "datasets": [
                        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                    ],
                }
            ],
        }
    }


def root_attrs(run: dict[str, Any]) -> dict[str, Any]:
    return {"ome": {"version": OME_VERSION, "bioformats2raw.layout": 3}, "live_pssr": run}


def series_attrs(consistency: bool = False) -> dict[str, Any]:
    return {"ome": {"version": OME_VERSION,
                    "series": [RAW, ENHANCED, *([CONSISTENCY] if consistency else [])]}}


def ome_xml(images: list[dict[str, Any]]) -> str:
    """Minimal OME-XML naming each series with its size and physical pixel size.

    ``images``: dicts with ``name, size_t, size_y, size_x, pixel_size_um, dtype`` ('uint16'...).
    """
    body = []
    for i, im in enumerate(images):
        body.append(
            f'  <Image ID="Image:{i}" Name="{escape(im["name"])}">\n'
            f'    <Pixels ID="Pixels:{i}" DimensionOrder="XYCZT" Type="{im["dtype"]}" '
            f'SizeX="{im["size_x"]}" SizeY="{im["size_y"]}" SizeC="1" SizeZ="1" SizeT="{im["size_t"]}" '
            f'PhysicalSizeX="{im["pixel_size_um"]}" PhysicalSizeXUnit="µm" '
            f'PhysicalSizeY="{im["pixel_size_um"]}" PhysicalSizeYUnit="µm">\n'
            f'      <Channel ID="Channel:{i}:0" SamplesPerPixel="1"/>\n'
            f"    </Pixels>\n  </Image>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" Creator="live-pssr">\n'
        + "\n".join(body)
        + "\n</OME>\n"
    )
