"""Run the Snakemake workflow of this checkout in a temporary project folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"


def load_config(name: str) -> dict:
    """A shipped config, set to write into the folder the test runs Snakemake in."""
    config = yaml.safe_load((ROOT / "workflow" / "config" / f"{name}.yaml").read_text())
    config["project"]["workdir"] = "."
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def workflow_env(workdir: Path, mirror: Path | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "SANODE_DATA_MIRROR")
    }
    env["RAY_AUTH_MODE"] = "disabled"
    # short, unique Ray folder (Unix socket paths are limited to ~107 characters)
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="sray")
    env["PYTHONWARNINGS"] = "ignore"
    if mirror is not None:
        env["SANODE_DATA_MIRROR"] = str(mirror)
    return env


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    """The command line that runs this checkout's workflow in ``workdir``."""
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
            *args]  # fmt: skip


def snakemake(
    workdir: Path, *args: str, env: dict[str, str], timeout: float = 600, **popen
) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_cmd(workdir, *args), env=env, capture_output=True,
                          text=True, timeout=timeout, **popen)  # fmt: skip
