"""Find and stop the Ray processes of one test, never those of another Ray on the machine
(a study running beside the tests): every process a test's Ray starts inherits the test's
private ``RAY_TMPDIR`` (the ``ray_env`` fixture)."""

from __future__ import annotations

import os
import signal
import time

import psutil


def processes_of(ray_tmpdir: str) -> list[psutil.Process]:
    """The processes whose environment holds ``RAY_TMPDIR=ray_tmpdir`` (this one excluded)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get("RAY_TMPDIR") == ray_tmpdir:
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def trial_workers(ray_tmpdir: str) -> list[psutil.Process]:
    """The Ray Tune trial workers (``ray::ImplicitFunc...``) of the test's Ray."""
    found = []
    for proc in processes_of(ray_tmpdir):
        try:
            title = " ".join(proc.cmdline())
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if "ray::" in title and "ImplicitFunc" in title:
            found.append(proc)
    return found


def stop_ray(ray_tmpdir: str, timeout: float = 30.0) -> None:
    """Stop a Ray that ``ray start`` began under ``ray_tmpdir`` (what ``ray stop --force``
    does to every Ray on the machine): SIGTERM, then SIGKILL what is left."""
    procs = processes_of(ray_tmpdir)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=timeout / 2)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=timeout / 2)
    time.sleep(0.1)
