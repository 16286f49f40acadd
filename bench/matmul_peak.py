"""This machine's matrix-multiply peak in fp32 and bf16 (GFLOP/s), at a given thread count.

    python bench/matmul_peak.py --threads 2

Square and transformer-shaped (tokens x hidden @ hidden x 4*hidden) products; the best of several
repetitions is the peak. On CPUs without AVX512-BF16/AMX, bf16 runs far below fp32, which is why
`precision: auto` picks fp32 there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

import torch

from bench.common import bench_parser, write_result


def gflops(m: int, k: int, n: int, dtype: torch.dtype, repeats: int = 10, device: str = "cpu") -> float:
    """The best of `repeats` timed (m x k) @ (k x n) products on random data, after two warm-ups."""
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)

    def sync() -> None:  # CUDA runs asynchronously: the clock is read only after the product is done
        if a.is_cuda:
            torch.cuda.synchronize(a.device)

    for _ in range(2):
        a @ b
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - started)
    return 2 * m * k * n / best / 1e9


SHAPES = {"square 1024": (1024, 1024, 1024), "MiniLM FFN (2048 tokens x 384 -> 1536)": (2048, 384, 1536)}


def measure_peak(threads: int) -> dict[str, float]:
    """The best fp32 and bf16 GFLOP/s over SHAPES at this thread count (other benchmarks quote against it)."""
    torch.set_num_threads(threads)
    best = {"fp32_gflops": 0.0, "bf16_gflops": 0.0}
    for m, k, n in SHAPES.values():
        best["fp32_gflops"] = max(best["fp32_gflops"], gflops(m, k, n, torch.float32))
        best["bf16_gflops"] = max(best["bf16_gflops"], gflops(m, k, n, torch.bfloat16, repeats=2))
    return {k: round(v, 1) for k, v in best.items()}


def main() -> None:
    parser = bench_parser(__doc__, threads="Intra-op threads of the products", out=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = {}
    for name, (m, k, n) in SHAPES.items():
        for dtype in (torch.float32, torch.bfloat16):
            value = gflops(m, k, n, dtype, repeats=2 if dtype == torch.bfloat16 else 10)
            out[f"{name} {str(dtype).removeprefix('torch.')}"] = round(value, 1)
            print(f"{name:<42} {str(dtype):<16} {value:8.1f} GFLOP/s", flush=True)
    write_result({"threads": args.threads, "gflops": out}, None)


if __name__ == "__main__":
    main()
