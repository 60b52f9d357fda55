"""How many CPU threads a training run uses: measured at the start, never a count measured slower.

Small layers (LeNet's) parallelise poorly and OpenMP threads spin while they wait: on a
shared 2-core machine one thread ran LeNet 4x faster than two while other processes were
busy (issue 19: 2,569 vs 644 img/s), and ~1.2x slower when it was idle. So each candidate
count is timed, and load that comes and goes is met by interleaving: round after round,
every count runs one step, so a burst from another process lands on all counts alike rather
than on whichever was being measured. A count's time is the median of its rounds (one lucky
step does not win), and the count with the smallest median is picked, the fewer threads on a
tie: the pick is never a count measured slower than another.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable

# Enough rounds for a median that one burst cannot move, few enough to cost well under a second on LeNet.
ROUNDS = 5
# A step this slow at all threads is a big layer (224x224 convs), which gains from every core: measure no further.
SLOW_STEP_S = 0.25
# Stop measuring after this long (rounds already taken count), so a slow model starts training quickly.
BUDGET_S = 2.0


def pick_threads(
    step: Callable[[], object],
    counts: Iterable[int],
    set_threads: Callable[[int], object],
    clock: Callable[[], float] = time.perf_counter,
    rounds: int = ROUNDS,
    budget_s: float = BUDGET_S,
) -> tuple[int, dict[int, float]]:
    """(the thread count to train with, the median seconds per step of each count measured).

    ``step`` runs one forward+backward; ``set_threads`` sets the thread count (``torch.set_num_threads``);
    ``clock`` is injected so that tests can script the timings.
    """
    counts = sorted(set(counts), reverse=True)
    samples: dict[int, list[float]] = {n: [] for n in counts}

    def timed(n: int) -> float:
        set_threads(n)
        t0 = clock()
        step()
        return clock() - t0

    start = clock()
    for n in counts:  # warm-up, one each (first calls allocate and pick kernels)
        timed(n)
    first = timed(counts[0])
    samples[counts[0]].append(first)
    if first > SLOW_STEP_S or len(counts) == 1:
        return counts[0], {counts[0]: first}
    for r in range(rounds):
        for n in counts if r % 2 else reversed(counts):  # alternate the order: neither count always runs first
            if r or n != counts[0]:
                samples[n].append(timed(n))
        if clock() - start > budget_s and r >= 1:
            break
    medians = {n: statistics.median(s) for n, s in samples.items()}
    pick = min(counts, key=lambda n: (medians[n], n))
    return pick, medians
