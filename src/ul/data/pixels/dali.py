"""The DALI decoder: `fn.readers.webdataset` over the raw tar shards → `fn.decoders.image` → crop/resize.

For device "cuda" the decoder runs as DALI's `device="mixed"` (nvJPEG) and the rest on the GPU; without one the
whole pipeline is CPU with `device_id=None` (DALI rejects -1 and refuses "mixed" without CUDA).
The reader is given an index per tar that lists exactly the selected files (ul.data.rawshards:
the ones decode left out are simply not in it), read in order (no shuffling), with the last batch
padded with repeats, which are dropped, so row k of the output is selected file k. DALI stops at the first bad file and only reports
the batch; prefetching means the failing batch can be up to `PREFETCH` batches behind the one
being fetched, which `BackendError.first` accounts for.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator

import numpy as np
from nvidia.dali import fn, pipeline_def, types

from ul.data.layout import BackendError
from ul.data.rawshards import EXTENSIONS, Selection

PREFETCH = 2


@pipeline_def
def _pipeline(tars: list[str], indexes: list[str], resolution: int, channels: int, resize_mode: str, gpu: bool):
    data = fn.readers.webdataset(
        paths=tars,
        index_paths=indexes,
        ext=[";".join(EXTENSIONS)],  # one component per sample: the file, whichever its type
        missing_component_behavior="error",
        random_shuffle=False,
        pad_last_batch=True,
        name="reader",
    )
    images = fn.decoders.image(
        data,
        device="mixed" if gpu else "cpu",
        output_type=types.GRAY if channels == 1 else types.RGB,
        adjust_orientation=True,  # EXIF orientation applied, as decode_pil does (ul.data.pixels.imagecheck)
    )
    if resize_mode == "resize":
        images = fn.resize(images, resize_shorter=resolution)  # linear, antialiased when shrinking
    images = fn.crop(images, crop=(resolution, resolution), out_of_bounds_policy="pad", fill_values=0)
    return fn.transpose(images, perm=[2, 0, 1])  # HWC → CHW


def batches(
    files: Selection,
    resolution: int,
    channels: int,
    resize_mode: str,
    threads: int,
    batch_size: int,
    device: str = "cpu",
) -> Iterator[np.ndarray]:
    """Yield N×C×H×W uint8 batches of the selected files in order; a failure raises BackendError."""
    with tempfile.TemporaryDirectory(prefix="ul-wds-") as scratch:
        yield from _batches(files, scratch, resolution, channels, resize_mode, threads, batch_size, device)


def _batches(files, scratch, resolution, channels, resize_mode, threads, batch_size, device):
    gpu = device == "cuda"  # ul's name; DALI calls the GPU decoder "mixed"
    batch_size = max(1, min(batch_size, len(files)))
    tars, indexes = files.dali_files(scratch)
    try:
        pipe = _pipeline(
            tars=tars,
            indexes=indexes,
            resolution=resolution,
            channels=channels,
            resize_mode=resize_mode,
            gpu=gpu,
            batch_size=batch_size,
            num_threads=max(1, threads),
            device_id=0 if gpu else None,
            prefetch_queue_depth=PREFETCH,
        )
        pipe.build()
    except Exception as err:
        raise BackendError(0, f"DALI pipeline could not start: {str(err).splitlines()[0]}") from err
    for it in range(math.ceil(len(files) / batch_size)):
        try:
            (out,) = pipe.run()
        except Exception as err:
            first = max(0, (it - PREFETCH) * batch_size)
            raise BackendError(first, f"DALI: {str(err).strip().splitlines()[0]}") from err
        if gpu:
            out = out.as_cpu()
        arr = out.as_array()
        yield arr[: min(batch_size, len(files) - it * batch_size)]
    del pipe
