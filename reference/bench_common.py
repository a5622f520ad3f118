"""Helpers shared by the benchmark drivers (bench_voxtral.py, bench_realtime.py); numpy only."""

import time


def numpy_bandwidth(mib=1024, reps=5, threads=2):
    """Read bandwidth of a plain large-array read: numpy sum over `mib` MiB of f32, split over
    `threads` threads (numpy releases the GIL in reductions); best of `reps`, GB/s."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    a = np.ones(mib * 1024 * 1024 // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as ex:
        for _ in range(reps + 1):
            t = time.perf_counter()
            s = sum(ex.map(lambda p: float(p.sum(dtype=np.float32)), parts))
            best = min(best, time.perf_counter() - t)
            assert s > 0
    return {"bytes": a.nbytes, "best_s": best, "gb_per_s": a.nbytes / best / 1e9, "threads": threads,
            "method": f"numpy {np.__version__} float32 sum over {mib} MiB split over {threads} threads, best of {reps}"}
