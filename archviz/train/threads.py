"""How many CPU threads a training run uses: measured at the start, never a count measured slower.

Small layers (LeNet's) parallelise poorly and OpenMP threads spin while they wait: on a
shared 2-core machine one thread ran LeNet 4x faster than two while other processes were
busy (issue 19: 2,569 vs 644 img/s), and ~1.2x slower when it was idle. So each candidate
count is timed, and load that comes and goes is met by interleaving: round after round,
every count runs one step, so a burst from another process lands on all counts alike rather
than on whichever was being measured. A count's time is the median of its rounds (one lucky
step does not win), and the count with the smallest median is picked, the fewer threads on a
tie: the pick is never a count measured slower than another, and every count is measured.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable

# Enough rounds for a median that one burst cannot move, few enough to cost well under a second on LeNet.
ROUNDS = 5
# Stop measuring after this long (at least one round after the warm-up), so a slow model starts training
# quickly; when even the warm-up round takes longer, its own times decide (big layers: seconds per step).
BUDGET_S = 2.0


def pick_threads(
    step: Callable[[], object],
    counts: Iterable[int],
    set_threads: Callable[[int], object],
    clock: Callable[[], float] = time.perf_counter,
    rounds: int = ROUNDS,
    budget_s: float = BUDGET_S,
) -> tuple[int, dict[int, float]]:
    """(the thread count to train with, the median seconds per step of each count).

    ``step`` runs one forward+backward; ``set_threads`` sets the thread count (``torch.set_num_threads``);
    ``clock`` is injected so that tests can script the timings. Every count is always measured: a
    slow step at all cores may be a big layer, or a small one whose threads fight other processes
    (issue 19: LeNet took 1.0 s per step at 2 threads and 0.07 s at 1 on a loaded machine).
    """
    counts = sorted(set(counts), reverse=True)
    warmup: dict[int, list[float]] = {n: [] for n in counts}
    samples: dict[int, list[float]] = {n: [] for n in counts}
    start = clock()
    for r in range(rounds + 1):  # round 0 warms up (the first calls allocate and pick kernels)
        for n in counts if r % 2 else reversed(counts):  # alternate the order: no count always runs first
            set_threads(n)
            t0 = clock()
            step()
            (samples if r else warmup)[n].append(clock() - t0)
        if clock() - start > budget_s:
            break
    if not samples[counts[0]]:  # the warm-up alone used the budget: its times are all there is
        samples = warmup
    medians = {n: statistics.median(s) for n, s in samples.items() if s}
    pick = min(medians, key=lambda n: (medians[n], n))
    return pick, medians
