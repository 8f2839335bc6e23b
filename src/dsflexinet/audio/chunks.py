"""Cache-sized row chunks for batched CPU work.

On CPU, a whole training batch (256 clips) makes every intermediate of an FFT or STFT tens of MB: each such
tensor is freshly mapped and page-faulted by the allocator and evicted from cache before its next use. Running
the same batched calls on a few clips at a time kept the pipeline 2-3x faster per clip on the development
machine. On GPUs the whole batch goes in one call, and so it does while tracing: a traced loop over chunks
would freeze the batch size of the example into the exported graph.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def row_chunks(rows: int, device: torch.device, cpu_rows: int) -> Iterator[slice]:
    """Slices covering `rows` rows: `cpu_rows` at a time on CPU, all at once elsewhere or while tracing."""
    if device.type != "cpu" or torch.jit.is_tracing():
        yield slice(None)
        return
    for start in range(0, rows, cpu_rows):
        yield slice(start, min(start + cpu_rows, rows))
