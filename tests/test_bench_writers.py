"""The peer writers of ``bench pipeline`` write what they claim: the frames, readable by zarr-python."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from live_pssr.bench.pipeline import camera_like_frames
from live_pssr.bench.writers import acquire_zarr_fps, tensorstore_fps


@pytest.mark.parametrize("writer, folder, package", [
    (tensorstore_fps, "peer-tensorstore.zarr", "tensorstore"),
    (acquire_zarr_fps, "peer-acquire.zarr", "acquire_zarr")])
@pytest.mark.parametrize("codec", ["lz4", "none"])
def test_peer_writes_the_frames(tmp_path, writer, folder, package, codec):
    pytest.importorskip(package)
    frames = camera_like_frames((48, 64), n=3)
    fps, note = writer(tmp_path, frames, 5, codec, keep=True)
    assert fps > 0 and note
    arr = zarr.open_array(str(tmp_path / folder), mode="r")
    assert arr.shape == (5, 1, 48, 64) and arr.dtype == np.uint16
    for i in range(5):
        np.testing.assert_array_equal(arr[i, 0], frames[i % 3])
    if codec == "lz4":
        assert "blosc" in str(arr.metadata.codecs).lower()
