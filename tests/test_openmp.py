"""torch and FAISS each bring their own OpenMP runtime (two libgomp copies in one process).

Both import orders must work, a FAISS search must leave torch's parallel ops correct, and the
thread counts gallery sets must be the ones in force; importing gallery first makes both
runtimes spin only briefly before waiting passively, unless the caller chose a wait policy. Each case runs in a fresh
interpreter, because import order can only be tested before either library is loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    first, second = sys.argv[1:3]
    __import__(first)
    __import__(second)
    import faiss
    import numpy as np
    import torch

    from gallery.runtime import set_threads

    set_threads(2)
    assert torch.get_num_threads() == 2, torch.get_num_threads()
    assert faiss.omp_get_max_threads() == 2, faiss.omp_get_max_threads()

    rng = np.random.default_rng(0)
    base = rng.normal(size=(20000, 128)).astype(np.float32)
    queries = rng.normal(size=(200, 128)).astype(np.float32)  # enough queries for FAISS's OpenMP path
    index = faiss.IndexFlatL2(128)
    index.add(base)
    _, found = index.search(queries, 1)
    exact = ((queries[:, None, :] - base[None, :2000, :]) ** 2).sum(-1)  # spot-check against numpy
    nearest_in_first_2000 = exact.argmin(1)
    in_range = found[:, 0] < 2000
    assert (found[in_range, 0] == nearest_in_first_2000[in_range]).all()

    # Large torch ops right after FAISS's parallel region: a matmul and a convolution.
    a = torch.from_numpy(rng.normal(size=(1024, 1024)).astype(np.float32))
    b = torch.from_numpy(rng.normal(size=(1024, 1024)).astype(np.float32))
    product = (a @ b).numpy()
    expected = a.numpy().astype(np.float64) @ b.numpy().astype(np.float64)
    assert np.abs(product - expected).max() < 1e-2, np.abs(product - expected).max()
    images = torch.from_numpy(rng.normal(size=(8, 3, 128, 128)).astype(np.float32))
    weights = torch.from_numpy(rng.normal(size=(32, 3, 5, 5)).astype(np.float32))
    out = torch.nn.functional.conv2d(images, weights)
    one = torch.nn.functional.conv2d(images[:1], weights)  # batch 1: another parallel split
    assert torch.allclose(out[:1], one, atol=1e-3)

    # And FAISS again after torch, multi-threaded and single-threaded (the store's path).
    _, again = index.search(queries, 1)
    assert (again == found).all()
    faiss.omp_set_num_threads(1)
    _, single = index.search(queries[:5], 1)
    assert (single[:, 0] == found[:5, 0]).all()
    set_threads(2)
    print("ok", torch.get_num_threads(), faiss.omp_get_max_threads())
    """
)


@pytest.mark.parametrize("order", [("torch", "faiss"), ("faiss", "torch")], ids=["torch-first", "faiss-first"])
def test_torch_and_faiss_work_in_either_import_order(order: tuple[str, str]) -> None:
    # No *_NUM_THREADS from the caller's environment: the counts must come from set_threads.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *order], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "2", "2"]


@pytest.mark.parametrize(
    ("chosen", "expected"), [(None, "PASSIVE 1000"), ("ACTIVE", "ACTIVE unset")], ids=["unset", "chosen"]
)
def test_importing_gallery_makes_openmp_wait_briefly_unless_the_caller_chose(chosen: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    if chosen is not None:
        env["OMP_WAIT_POLICY"] = chosen
    script = (
        "import os, gallery, torch, faiss; torch.ones(64, 64) @ torch.ones(64, 64); "
        "print(os.environ['OMP_WAIT_POLICY'], os.environ.get('GOMP_SPINCOUNT', 'unset'))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected.split()
    assert "Invalid value" not in result.stderr  # both runtimes accepted them
