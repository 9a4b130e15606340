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


def test_make_carry_keeps_a_stopped_runs_trial_checkpoints(tmp_path):
    """``make carry NAME=<run>`` copies each study's ``trials-<digest>`` and ``scores-<digest>``
    into ``results/<run>/carry/`` (a newer checkpoint replaces a carried one); ``make <run>``
    copies them back without replacing a file already there."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    make = ["make", "-s", "-f", str(ROOT / "Makefile")]
    res = subprocess.run([*make, "carry"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode != 0 and "make carry NAME=robustness" in res.stderr
    res = subprocess.run([*make, "carry", "NAME=long"], cwd=tmp_path, capture_output=True,
                         text=True)  # fmt: skip
    assert res.returncode != 0 and "holds no trial checkpoints" in res.stderr
    ray = tmp_path / "runs" / "robustness" / "results" / "ray"
    for study, trial in (("mnist", "00000-a"), ("fashion", "00003-b")):
        (ray / study / "trials-d1" / trial).mkdir(parents=True)
        (ray / study / "trials-d1" / trial / "model.pt").write_text(f"{study} epoch 4")
    (ray / "mnist" / "tune-d1").mkdir()  # Ray's experiment folder is not carried
    (ray / "mnist" / "scores-e1").mkdir()  # the evaluations' scored cells are
    (ray / "mnist" / "scores-e1" / "c0ffee.pt").write_text("a scored cell")
    for _ in range(2):  # a second carry replaces what the first kept
        res = subprocess.run([*make, "carry", "NAME=robustness"], cwd=tmp_path,
                             capture_output=True, text=True)  # fmt: skip
        assert res.returncode == 0, res.stderr
    carry = tmp_path / "results" / "robustness" / "carry"
    kept = sorted(p.relative_to(carry).as_posix() for p in carry.rglob("model.pt"))
    assert kept == ["fashion/trials-d1/00003-b/model.pt", "mnist/trials-d1/00000-a/model.pt"]
    assert sorted(p.name for p in carry.glob("*/*")) == ["scores-e1", "trials-d1", "trials-d1"]
    assert (carry / "mnist" / "scores-e1" / "c0ffee.pt").read_text() == "a scored cell"
    # the copy back that make robustness does first: never over a file already there
    (ray / "mnist" / "trials-d1" / "00000-a" / "model.pt").write_text("mnist epoch 9")
    (carry / "mnist" / "trials-d1" / "00001-c").mkdir()
    (carry / "mnist" / "trials-d1" / "00001-c" / "model.pt").write_text("carried")
    recipe = (ROOT / "Makefile").read_text().split("cp -rn ", 1)[1].split(";", 1)[0]
    copy = "cp -rn " + recipe.replace("$@", "robustness")
    subprocess.run(copy, shell=True, cwd=tmp_path, check=True)
    assert (ray / "mnist" / "trials-d1" / "00000-a" / "model.pt").read_text() == "mnist epoch 9"
    assert (ray / "mnist" / "trials-d1" / "00001-c" / "model.pt").read_text() == "carried"
