"""How many CPU threads the torch networks use."""

from __future__ import annotations

import torch


def set_torch_threads(count: int) -> None:
    """Use ``count`` threads for torch's intra-op parallelism (process-wide; torch's default is one per core)."""
    torch.set_num_threads(count)
