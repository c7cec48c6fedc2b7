"""The damaged-DICOM corpus (tests/dicom_mutants.py: real series, one planted defect each, and random
header mutations with a fixed seed) through ``medvision convert``: never a traceback or an unexpected
error, never a hang, bounded memory, and for every planted defect the volume, warning or refusal it
must give."""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from .dicom_mutants import FUZZ, SHARED, build, classify, outcome

SECONDS = 60  # one mutant, at most
PEAK_MB = 400  # the memory one mutant takes, at most (the undamaged CT takes about 40)
SHARDS = 6  # the corpus in parts that the suite's workers share (each builds the corpus once, in about 2 s)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build(tmp_path_factory.mktemp("mutants"), fuzz=FUZZ)


def test_the_corpus_holds_a_few_hundred_mutants(corpus):
    # pydicom's own files alone without ../shared
    assert len(corpus) >= (FUZZ + 50 if SHARED.is_dir() else FUZZ + 10)
    assert len({m.folder for m in corpus}) == len(corpus)


class PeakMemory:
    """The process's peak resident memory above its level at the start, in MB: the kernel's high-water mark
    (VmHWM), reset at the start (/proc/self/clear_refs), where the kernel allows it; else sampled every 5 ms
    from /proc, which misses a peak shorter than the sampler's turn (tracemalloc counted allocations exactly
    but made every mutant 2.6x slower). The heap's free memory goes back to the system first (malloc_trim),
    so the start level is what is alive then."""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        self.exact = _reset_high_water()
        self.start = self.peak = _resident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if not self.exact:
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _resident())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.exact:
            self.peak = max(self.peak, _high_water())
        else:
            self._thread.join()
        self.peak = max(self.peak, _resident())

    @property
    def mb(self) -> float:
        return (self.peak - self.start) / 2**20


_PAGE = os.sysconf("SC_PAGE_SIZE")
_LIBC_NAME = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_LIBC_NAME) if _LIBC_NAME else None


def _resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _reset_high_water() -> bool:
    """Set the process's peak resident memory to what it holds now (Linux 4.0 and later); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _high_water() > 0
    except OSError:
        return False


def _high_water() -> int:
    """The process's peak resident memory (VmHWM) in bytes; 0 where /proc does not say it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def test_the_memory_meter_sees_what_a_mutant_would_take():
    with PeakMemory() as small:
        np.ones(2**20)  # 8 MB
    with PeakMemory() as big:
        block = np.ones(PEAK_MB * 2**20 // 8 + 2**22)  # PEAK_MB + 32 MB, touched
        del block  # (gone before the meter stops: the peak is what counts)
    assert small.mb < 50 and big.mb > PEAK_MB, (small.mb, big.mb, big.exact)


def _bounded(mutant, tmp: Path) -> tuple[dict, float]:
    """The mutant's outcome within SECONDS, and the memory it took in MB."""
    done: dict = {}

    def work():
        try:
            done["result"] = outcome(mutant, tmp)
        except BaseException as exc:  # noqa: BLE001 - reported below as a crash
            done["error"] = exc

    with PeakMemory() as memory:
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        thread.join(SECONDS)
    assert not thread.is_alive(), f"{mutant.name}: still running after {SECONDS} s"
    if "error" in done:
        raise AssertionError(f"{mutant.name}: raised {done['error']!r}") from done["error"]
    return done["result"], memory.mb


def _array(path: Path) -> np.ndarray:
    from medvision.io import load

    return load(path).array


@pytest.mark.slow
@pytest.mark.parametrize("shard", range(SHARDS))
def test_every_mutant_ends_cleanly_and_each_planted_defect_is_met_as_planned(corpus, shard, tmp_path):
    counts: collections.Counter = collections.Counter()
    wrong = []
    originals: dict[Path, np.ndarray] = {}
    most = 0.0
    part = corpus[shard::SHARDS]
    for mutant in part:
        out = tmp_path / mutant.folder.name
        out.mkdir()
        result, peak = _bounded(mutant, out)
        most = max(most, peak)
        got = classify(mutant, result)
        counts[got] += 1
        if got == "crash":
            wrong.append(f"{mutant.name}: exit {result['rc']}: {result['stderr'][-400:]}")
            continue
        if peak > PEAK_MB:
            wrong.append(f"{mutant.name}: {peak:.0f} MB of memory")
        if mutant.outcome == "clean":
            continue
        if got != mutant.outcome:
            wrong.append(f"{mutant.name}: {got}, not {mutant.outcome}: {result['stderr'][-300:]}")
        elif mutant.expect and mutant.expect not in result["stderr"]:
            wrong.append(f"{mutant.name}: {mutant.expect!r} not said: {result['stderr'][-300:]}")
        if mutant.equal and got != "error":
            if mutant.original not in originals:
                originals[mutant.original] = _array(mutant.original)
            written = result["written"]
            if len(written) != 1 or not np.array_equal(_array(written[0]), originals[mutant.original]):
                wrong.append(f"{mutant.name}: the volume differs from the undamaged series'")
    print(f"mutants, part {shard + 1} of {SHARDS}: tried {len(part)}, "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"; memory at most {most:.0f} MB")
    assert not wrong, "\n".join(wrong)
    assert counts["crash"] == 0


def test_as_a_user_runs_it_the_terminal_shows_no_traceback(corpus, tmp_path):
    """The command line as typed (its own logging, not pytest's): a decoder's failure that pydicom logs with
    its traceback, a damaged header, a count of frames that cannot be."""
    import subprocess
    import sys

    wanted = [m for m in corpus if m.name.endswith(("-rows-double", "unknown-vr-3", "frames-2147483647-alone"))]
    assert wanted
    for mutant in wanted[:4]:
        done = subprocess.run([sys.executable, "-m", "medvision.cli", "convert", "-q", str(mutant.folder), "-o",
                               str(tmp_path / f"{mutant.folder.name}.nii.gz")], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode in (0, 2), (mutant.name, done.stderr[-500:])
        assert "Traceback" not in done.stderr and "Logging error" not in done.stderr, (mutant.name, done.stderr)
