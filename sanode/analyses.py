"""Pipeline stages of the paper's analyses: models and data in, tidy tables out.

Each stage loads the trained models the tune stage selected (``<models>/eps_train=<eps>.pt``)
and the prepared data, runs one :mod:`sanode.studies` function, checks the table schemas and
writes ``results/tables/*.parquet``. Each analysis is one MLflow run (tag ``sanode.kind =
analysis``) carrying the provenance tags, its settings and its tables as artifacts.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import torch

from . import tables, tracking
from .checkpoint import load_model
from .config import TrainConfig
from .model import SANode
from .noise import add_pixel_noise
from .pipeline import experiment_name, tracking_uri
from .prepare import load_prepared
from .robustness import noise_generator
from .studies import baselines, cases, census, inversion, mse_time, perturbation, timestep
from .study import eps_label, eps_train_grid, nearest_eps, train_settings

log = logging.getLogger(__name__)

Paths = dict[str, str]  # study -> path (models folder, prepared data), or output name -> path
DEFAULT_EPS_GRID = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def _model(models_dir: str, eps: float) -> SANode:
    model, _, _ = load_model(Path(models_dir) / f"eps_train={eps_label(eps)}.pt")
    return model.eval()


def _test_image(data: str, label: int) -> torch.Tensor:
    """The first test image of class ``label`` (for letters: the clean letter)."""
    x, y = load_prepared(data).split("test")
    hits = (y == label).nonzero()
    if len(hits) == 0:
        raise ValueError(f"the test split of {data} has no image of class {label}")
    return x[int(hits[0])]


def _write(frame: pd.DataFrame, name: str, path: str) -> None:
    tables.check_schema(frame, name)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    log.info("%s: %d rows -> %s", name, len(frame), path)


@contextlib.contextmanager
def tracked(config: dict, analysis: str, data: Paths) -> Iterator[tuple[object, str]]:
    """One MLflow run per analysis (resumed on a rerun, FAILED on an error), tagged with the
    provenance, the analysis settings and the checksum of every prepared data set it reads."""
    client = tracking.client(tracking_uri(config))
    exp_id = tracking.experiment_id(client, experiment_name(config))
    key = {"sanode.kind": "analysis", "sanode.analysis": analysis}
    tracking.mark_stale_runs(client, exp_id, key)
    run_id = tracking.start_or_resume_run(
        client,
        exp_id,
        key=key,
        name=f"analysis-{analysis}",
        tags={
            **tracking.provenance_tags(),
            "sanode.rule": analysis,
            "sanode.analysis_config": json.dumps(config["analyses"][analysis])[:5000],
            **_data_checksums(data),
        },
    )
    try:
        yield client, run_id
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")


def _data_checksums(data: Paths) -> dict[str, str]:
    tags = {}
    for study, path in data.items():
        meta = Path(path).with_suffix(".json")
        if meta.is_file():
            tags[f"sanode.data_sha256.{study}"] = json.loads(meta.read_text())["cache_sha256"]
    return tags


def _finish(client, run_id: str, outputs: dict[str, str], metrics: dict | None = None) -> None:
    for path in outputs.values():
        client.log_artifact(run_id, path, artifact_path="tables")
    if metrics:
        tracking.log_metrics(client, run_id, metrics)


def _dt(config: dict, study: str) -> tuple[float, str]:
    cfg = TrainConfig.from_dict(train_settings(config, study))
    return cfg.dt, cfg.method


# -- Fig. 4 ----------------------------------------------------------------------------------
def mse_time_stage(config: dict, models: Paths, data: Paths, outputs: Paths, **_) -> None:
    spec = config["analyses"]["mse_time"]
    study = spec["study"]
    eps = nearest_eps(config, study, spec.get("eps_train", 0.3))
    dt, method = _dt(config, study)
    label = int(spec.get("label", 3))
    with tracked(config, "mse_time", data) as (client, run_id):
        curves, finals = mse_time.mse_over_time(
            _model(models[study], eps),
            _test_image(data[study], label),
            label,
            eps_test=[float(e) for e in spec.get("eps_test", DEFAULT_EPS_GRID)],
            items=int(spec.get("items", 2000)),
            t_end=float(spec.get("t_end", 40.0)),
            dt=dt,
            method=method,
            every=int(spec.get("every", 5)),
        )
        extra = {"study": study, "eps_train": eps, "label": label, "mlflow_run_id": run_id}
        _write(curves.assign(**extra), "fig4_mse_time", outputs["curves"])
        _write(finals.assign(**extra), "fig4_final_mse", outputs["finals"])
        hist = float(spec.get("histogram_eps", 0.6))
        at = finals[(finals["eps_test"] - hist).abs() < 1e-9]
        on_target = float(at["on_target"].mean()) if len(at) else -1.0
        _finish(client, run_id, outputs, {"on_target_fraction_at_histogram_eps": on_target})


# -- Figs. 5, 6 --------------------------------------------------------------------------------
def perturbation_stage(config: dict, models: Paths, data: Paths, outputs: Paths, **_) -> None:
    spec = config["analyses"]["perturbation"]
    study = spec["study"]
    dt, method = _dt(config, study)
    label = int(spec.get("label", 0))
    image = _test_image(data[study], label)
    shown = nearest_eps(config, study, spec.get("eps_train", 0.3))
    kw = dict(t_end=float(spec.get("t_end", 40.0)), dt=dt, method=method)
    singles, curves = [], []
    with tracked(config, "perturbation", data) as (client, run_id):
        for eps in eps_train_grid(config, study):
            model = _model(models[study], eps)
            single = perturbation.single_coefficient(
                model,
                image,
                label,
                sigmas=[float(s) for s in spec.get("sigmas", [0.0, 0.25, 0.5, 0.75, 1.0, 1.5])],
                samples=int(spec.get("samples", 32)),
                **kw,
            )
            order = single.drop_duplicates("coefficient").sort_values("rank")["coefficient"]
            curve = perturbation.collective(
                model,
                image,
                label,
                [int(j) for j in order],
                sigma=float(spec.get("sigma_collective", 1.0)),
                samples=int(spec.get("samples", 32)),
                tolerance=float(spec.get("tolerance", 0.05)),
                **kw,
            )
            f = perturbation.robust_fraction(curve)
            log.info("eps_train %g: f = %.3f (1 - f = %.3f)", eps, f, 1 - f)
            singles.append(single.assign(eps_train=eps, shown=eps == shown))
            curves.append(curve.assign(eps_train=eps, f=f))
        extra = {"study": study, "label": label, "mlflow_run_id": run_id}
        _write(
            pd.concat(singles, ignore_index=True).assign(**extra),
            "fig5_single_perturbation",
            outputs["single"],
        )
        collective = pd.concat(curves, ignore_index=True).assign(**extra)
        _write(collective, "fig6_collective_perturbation", outputs["collective"])
        summary = collective.drop_duplicates("eps_train")
        pairs = zip(summary["eps_train"], summary["f"], strict=True)
        _finish(client, run_id, outputs, {f"one_minus_f_eps{e:g}": 1 - f for e, f in pairs})


# -- Fig. 7 ----------------------------------------------------------------------------------
def cases_stage(config: dict, models: Paths, data: Paths, outputs: Paths, *, states: str) -> None:
    study = config["analyses"]["cases"]["study"]
    cfg = TrainConfig.from_dict(train_settings(config, study))
    saved = torch.load(states, weights_only=True)
    patterns = load_prepared(data[study]).patterns
    with tracked(config, "cases", data) as (client, run_id):
        table = cases.three_cases(
            saved["inputs"],
            saved["final"],
            saved["overlap"],
            saved["labels"],
            patterns,
            threshold=cfg.threshold,
        )
        table = table.assign(
            study=study, eps_train=eps_train_grid(config, study)[0], mlflow_run_id=run_id
        )
        _write(table, "fig7_cases", outputs["cases"])
        _finish(client, run_id, outputs)


# -- Fig. 8 ----------------------------------------------------------------------------------
def timestep_stage(config: dict, models: Paths, data: Paths, outputs: Paths, **_) -> None:
    spec = config["analyses"]["timestep"]
    study = spec["study"]
    eps = nearest_eps(config, study, spec.get("eps_train", 0.3))
    x, y = load_prepared(data[study]).split("test")
    gen = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(x), generator=gen)[: int(spec.get("items", 100))]
    noisy = add_pixel_noise(x[pick], float(spec.get("eps_test", 0.3)), noise_generator(0, 0))
    with tracked(config, "timestep", data) as (client, run_id):
        table = timestep.timestep_convergence(
            _model(models[study], eps),
            noisy,
            y[pick],
            t=float(spec.get("t", 10.0)),
            dts=[float(d) for d in spec.get("dts", [0.5, 0.25, 0.2, 0.1, 0.05, 0.025, 0.01])],
            methods=list(spec.get("methods", ["euler", "rk4"])),
            reference_dt=float(spec.get("reference_dt", 0.001)),
        )
        orders = timestep.fitted_order(table)
        table = table.assign(
            order=table["method"].map(orders), study=study, eps_train=eps, mlflow_run_id=run_id
        )
        _write(table, "fig8_timestep", outputs["timestep"])
        _finish(client, run_id, outputs, {f"order_{m}": o for m, o in orders.items()})


# -- Figs. 9-12 --------------------------------------------------------------------------------
def inversion_stage(config: dict, models: Paths, data: Paths, outputs: Paths, **_) -> None:
    spec = config["analyses"]["inversion"]
    trajectories, grids, images = [], [], []
    with tracked(config, "inversion", data) as (client, run_id):
        for target in spec["targets"]:
            study, label = target["study"], int(target.get("label", 0))
            eps = eps_train_grid(config, study)[0]
            model = _model(models[study], eps)
            image = _test_image(data[study], label)
            extra = {"study": study, "label": label, "eps_train": eps}
            traj = inversion.pixel_trajectories(
                model,
                image,
                t_end=float(spec.get("trajectory_t", 8.0)),
                dt=float(spec.get("trajectory_dt", 0.01)),
                every=int(spec.get("trajectory_every", 5)),
            )
            trajectories.append(traj.assign(**extra, t_inv=float(target.get("t_inv", 3.2))))
            dts = [float(d) for d in spec.get("dts", [0.1, 0.05, 0.02, 0.01])]
            t_invs = sorted(
                {
                    *map(float, spec.get("t_inv_grid", [1.0, 2.0, 4.0, 8.0])),
                    float(target.get("t_inv", 3.2)),
                }
            )
            method = spec.get("method", "rk4")
            grid = inversion.inversion_grid(
                model,
                image,
                t_invs=t_invs,
                dts=dts,
                dtypes=list(spec.get("dtypes", ["float32", "float64"])),
                method=method,
            )
            grids.append(grid.assign(**extra))
            images.append(
                inversion.inversion_images(
                    model, image, t_invs=t_invs, dt=min(dts), method=method
                ).assign(**extra, shown_t_inv=float(target.get("t_inv", 3.2)))
            )
            log.info("inversion %s: %s", study, grid.to_dict("records"))
        tag = {"mlflow_run_id": run_id}
        _write(
            pd.concat(trajectories, ignore_index=True).assign(**tag),
            "fig9_trajectories",
            outputs["trajectories"],
        )
        _write(
            pd.concat(grids, ignore_index=True).assign(**tag), "fig10_inversion", outputs["errors"]
        )
        _write(
            pd.concat(images, ignore_index=True).assign(**tag),
            "fig10_inversion_images",
            outputs["images"],
        )
        _finish(client, run_id, outputs)


# -- baselines ---------------------------------------------------------------------------------
def baselines_stage(config: dict, models: Paths, data: Paths, outputs: Paths, **_) -> None:
    spec = config["analyses"]["baselines"]
    frames = []
    with tracked(config, "baselines", data) as (client, run_id):
        for study in config["studies"]:
            prepared = load_prepared(data[study])
            x_tr, y_tr = prepared.split("train")
            x_te, y_te = prepared.split("test")
            k = prepared.patterns.shape[0]
            ev = config["studies"][study].get("evaluate", {})
            eps_test = [float(e) for e in ev.get("eps_test", [0.0])]
            for eps in eps_train_grid(config, study):
                for kind in baselines.KINDS:
                    model = baselines.train_baseline(
                        kind,
                        x_tr,
                        y_tr,
                        k,
                        eps_train=eps,
                        epochs=int(spec.get("epochs", 20)),
                        batch_size=int(spec.get("batch_size", 100)),
                        lr=float(spec.get("lr", 1e-3)),
                        seed=int(spec.get("seed", 0)),
                    )
                    table = baselines.evaluate_baseline(
                        model, x_te, y_te, eps_test=eps_test, seed=int(ev.get("seed", 0))
                    )
                    frames.append(
                        table.assign(
                            study=study,
                            dataset=prepared.meta.get("dataset", study),
                            model=kind,
                            eps_train=eps,
                            parameters=sum(p.numel() for p in model.parameters()),
                        )
                    )
                    log.info(
                        "%s %s eps_train %g: %s",
                        study,
                        kind,
                        eps,
                        table["accuracy"].round(4).tolist(),
                    )
        _write(
            pd.concat(frames, ignore_index=True).assign(mlflow_run_id=run_id),
            "baselines",
            outputs["baselines"],
        )
        _finish(client, run_id, outputs)


# -- certificate and census --------------------------------------------------------------------
def census_stage(config: dict, models: Paths, data: Paths, outputs: Paths, **_) -> None:
    spec = config["analyses"]["census"]
    stability, rows = [], []
    with tracked(config, "census", data) as (client, run_id):
        for study in config["studies"]:
            dt, _ = _dt(config, study)
            x_te, _ = load_prepared(data[study]).split("test")
            inputs = census.census_inputs(
                x_te, int(spec.get("count", 500)), seed=int(spec.get("seed", 0))
            )
            for eps in eps_train_grid(config, study):
                model = _model(models[study], eps)
                stability.append(
                    {"study": study, "eps_train": eps, **model.stability_report(numeric=False)}
                )
                for source, x in inputs.items():
                    result = census.attractor_census(
                        model,
                        x,
                        t_end=float(spec.get("t_end", 200.0)),
                        dt=dt,
                        tol=float(spec.get("tol", 1e-4)),
                    )
                    rows.append({"study": study, "eps_train": eps, "source": source, **result})
                    log.info("%s eps_train %g %s: %s", study, eps, source, result)
        tag = {"mlflow_run_id": run_id}
        _write(pd.DataFrame(stability).assign(**tag), "stability", outputs["stability"])
        _write(pd.DataFrame(rows).assign(**tag), "census", outputs["census"])
        worst = max(r["max_real_jacobian_eig"] for r in stability)
        _finish(client, run_id, outputs, {"max_real_jacobian_eig_all_models": worst})


STAGES = {
    "mse_time": mse_time_stage,
    "perturbation": perturbation_stage,
    "cases": cases_stage,
    "timestep": timestep_stage,
    "inversion": inversion_stage,
    "baselines": baselines_stage,
    "census": census_stage,
}


def analysis_figures_stage(
    config: dict,
    name: str,
    tables_in: Paths,
    figures_out: Paths,
    accuracy: str | None = None,
) -> None:
    """Draw the figures of analysis ``name`` from its tables (and the accuracy table for the
    baselines) and attach them to the analysis's MLflow run."""
    from . import study_plots as sp

    spec = config["analyses"][name]
    t = {k: pd.read_parquet(v) for k, v in tables_in.items()}
    if name == "mse_time":
        sp.fig4_mse_time(t["curves"], t["finals"], figures_out["fig4"],
                         histogram_eps=float(spec.get("histogram_eps", 0.6)))  # fmt: skip
    elif name == "perturbation":
        sp.fig5_single(t["single"], figures_out["fig5"])
        sp.fig6_collective(t["collective"], figures_out["fig6"],
                           tolerance=float(spec.get("tolerance", 0.05)))  # fmt: skip
    elif name == "cases":
        sp.fig7_cases(t["cases"], figures_out["fig7"])
    elif name == "timestep":
        sp.fig8_timestep(t["timestep"], figures_out["fig8"])
    elif name == "inversion":
        for key, path in figures_out.items():
            kind, study = key.split("_", 1)
            if kind == "trajectories":
                sp.fig9_trajectories(t["trajectories"], study, path)
            else:
                sp.fig10_inversion(t["errors"], t["images"], study, path)
    elif name == "baselines":
        ours = pd.read_parquet(accuracy) if accuracy else pd.DataFrame()
        for key, path in figures_out.items():
            sp.baselines_vs_sanode(t["baselines"], ours, key.removeprefix("baselines_"), path)
    elif name == "census":
        sp.census_figure(t["stability"], t["census"], figures_out["census"])
    else:
        raise ValueError(f"unknown analysis {name!r}")
    client = tracking.client(tracking_uri(config))
    exp_id = tracking.experiment_id(client, experiment_name(config))
    run_id = tracking.find_run(client, exp_id, {"sanode.kind": "analysis", "sanode.analysis": name})
    if run_id is not None:
        for path in figures_out.values():
            client.log_artifact(run_id, path, artifact_path="figures")
