"""Thread settings that let scipy's OpenBLAS share 2 cores with torch's OpenMP threads.

The coupling matrix's linear solves run fastest through scipy's LAPACK (OpenBLAS) on the
AMD EPYC machines measured here (a float32 ``getrs`` with 784 right-hand sides: 4.8 ms against
8.8 ms in torch's MKL; ``docs/performance.md``), but only where the two libraries' idle threads
do not spin against each other: OpenBLAS's workers busy-wait 2^28 cycles after every call and
torch's OpenMP workers 300,000 spins after every parallel region, so with the defaults the
training step ran twice as slow. Both are read from the environment when each library loads:

* ``OPENBLAS_THREAD_TIMEOUT=4``: OpenBLAS's workers sleep at once (a wake-up costs a few
  microseconds, three calls a training step);
* ``GOMP_SPINCOUNT=30000``: torch's workers spin a tenth as long (still long enough to bridge
  the microseconds between two torch operations).

:func:`prepare` sets both where the environment does not already hold them (the user's value
wins) and notes which came after their library had loaded in this process;
:func:`in_force` says whether both hold. No torch import here: ``sanode`` calls
:func:`prepare` before anything loads torch.
"""

from __future__ import annotations

import os
import sys

SETTINGS = {"OPENBLAS_THREAD_TIMEOUT": "4", "GOMP_SPINCOUNT": "30000"}
# the module whose import loads the library that reads each setting
READ_BY = {"OPENBLAS_THREAD_TIMEOUT": "scipy.linalg", "GOMP_SPINCOUNT": "torch"}

_late: set[str] = set()


def prepare() -> None:
    """Set each of :data:`SETTINGS` the environment lacks (children, e.g. Ray workers, inherit
    it); one whose library this process has already loaded is noted as late. Idempotent."""
    for name, value in SETTINGS.items():
        if name in os.environ:
            continue  # the user's, or set before: in force for libraries loaded after it
        if READ_BY[name] in sys.modules:
            _late.add(name)
        os.environ[name] = value


def late() -> list[str]:
    """The settings that came after their library had loaded (not in force in this process)."""
    return sorted(_late)


def in_force() -> bool:
    """Whether both settings (or the user's own values) hold in this process."""
    return not _late and all(name in os.environ for name in SETTINGS)
