"""Packaging: the conda environment pins what pyproject.toml pins; the README and CI run the
Makefile's targets; a fresh venv needs its disk space."""

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_conda_env_matches_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {d for d in project["dependencies"] if "snakemake" not in d}
    env = yaml.safe_load((ROOT / "envs" / "sanode.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) == pins
    assert all("==" in p for p in pins)
    assert "conda-forge" in env["channels"]


def test_readme_commands_are_the_makefile_targets():
    readme = (ROOT / "README.md").read_text()
    assert "make study" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.14.1 torchvision==0.29.1" in makefile


def test_config_checks_need_no_heavy_imports():
    """The Snakefile validates configs in Snakemake's own process (conda: Snakemake only)."""
    import sys

    code = (
        "import sys, yaml\n"
        "from sanode.pipeline.study import eps_train_grid\n"
        "from sanode.pipeline.validate import validate_config\n"
        "c = yaml.safe_load(open('workflow/config/default.yaml'))\n"
        "validate_config(c)\n"
        "assert eps_train_grid(c, 'letters')[-1] == 1.0\n"
        "print(sorted(m for m in ('torch', 'ray', 'pandas', 'mlflow') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_a_fresh_venv_is_refused_with_the_space_it_needs(tmp_path):
    """Too little disk for the CUDA build of torch: one line naming the space, nothing made."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"
    res = subprocess.run(
        ["make", "-s", f"VENV={venv}", f"{venv}/.installed"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "SANODE_MIN_FREE_MIB": str(10**12)},
    )  # fmt: skip
    assert res.returncode != 0
    assert "needs about 6.6 GB" in res.stderr and "MiB are free" in res.stderr
    assert not venv.exists()
