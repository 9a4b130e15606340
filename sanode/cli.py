"""Command line: ``sanode train``, ``sanode evaluate``, ``sanode bench``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path

from .config import ConfigError, TrainConfig

_NONE_WORDS = {"none", "null"}


def _field_parser(kind):
    """An argparse ``type`` for a dataclass field annotation (``float | None`` accepts 'none')."""
    args = typing.get_args(kind)
    optional = type(None) in args
    bases = [a for a in args if a is not type(None)] if args else [kind]

    def parse(text: str):
        if optional and text.lower() in _NONE_WORDS:
            return None
        for base in bases[:-1]:  # ``int | str``: an int if it reads as one, else the text
            try:
                return base(text)
            except ValueError:
                pass
        return bases[-1](text)

    parse.__name__ = getattr(bases[0], "__name__", "value")
    return parse


def _add_config_options(parser: argparse.ArgumentParser, skip: set[str]) -> None:
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training settings (defaults from sanode.TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if kind is bool:
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"(default {f.default})",
            )
        else:
            is_union = isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union
            group.add_argument(
                flag,
                dest=f.name,
                type=_field_parser(kind),
                default=None,
                metavar=f.name.upper(),
                help=f"(default {f.default})" + (", 'none' to unset" if is_union else ""),
            )


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """What every command that trains takes: ``--config``, ``--quiet`` and one flag per
    ``TrainConfig`` setting (read back by :func:`_config_from_args`)."""
    parser.add_argument("--config", help="YAML file of training settings (flags override it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_options(parser, skip=set())


def _config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    values = {}
    if args.config:
        path = Path(args.config)
        loaded = _load_yaml(path, parser, "--config") or {}
        if not isinstance(loaded, dict):
            parser.error(f"--config {path} must hold a mapping of training settings")
        values.update(loaded)
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    try:
        return TrainConfig.from_dict(values)
    except ConfigError as err:
        parser.error(f"{args.config}: {err}" if args.config else str(err))
        raise  # unreachable: parser.error exits


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(_fmt(r[c]).rjust(widths[c]) for c in columns))


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


EVAL_COLUMNS = ["eps_test", "noise_seed", "n", "exact", "partial", "wrong", "accuracy",
                "nearest_accuracy", "m_f", "work_fraction"]  # fmt: skip


def _eval_rows(model, cfg, split, eps_values, seed, tol=None) -> list[dict]:
    """The pipeline's evaluation (:func:`sanode.robustness.score`: same noise draws for the
    same seed, same columns as the evaluate stage's accuracy table), without MSE curves."""
    from .robustness import score
    from .settings import EvaluateSettings

    settings = EvaluateSettings(eps_test=tuple(eps_values), seed=seed, tol=tol, mse_items=0)
    accuracy = score(model, cfg, split.x, split.y, settings).accuracy
    return [{k: _python(v) for k, v in row.items()} for row in accuracy.to_dict("records")]


def _python(value):
    return value.item() if hasattr(value, "item") else value


def _cmd_train(args, parser) -> int:
    from .datasets import load_split
    from .train import train

    cfg = _config_from_args(args, parser)
    out = Path(args.out or f"runs/{cfg.dataset}/model.pt")
    train_split = load_split(cfg, "train")
    test_split = load_split(cfg, "test", letters_eps=0.0)
    val = None
    if args.validate:
        val = (test_split.x, test_split.y)
    result = train(
        cfg,
        train_split.x,
        train_split.y,
        train_split.patterns,
        val=val,
        checkpoint_path=out,
        resume=not args.no_resume,
        progress=not args.quiet,
    )
    for record in result.history:
        print(json.dumps(record), file=sys.stderr if args.quiet else sys.stdout)
    print(f"checkpoint: {out}")
    if args.eps_test:
        _print_table(
            _eval_rows(result.model, cfg, test_split, args.eps_test, cfg.seed),
            EVAL_COLUMNS[:-1],
        )
    return 0


def _cmd_evaluate(args, parser) -> int:
    from .checkpoint import load_model
    from .datasets import load_split

    try:
        model, cfg, _ = load_model(args.checkpoint)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    overrides = {
        k: v
        for k, v in (
            ("t_eval", args.t_eval),
            ("dt", args.dt),
            ("method", args.method),
            ("mirror", args.mirror),
            ("data_root", args.data_root),
            ("matmul_precision", args.matmul_precision),
        )
        if v is not None
    }
    try:
        cfg = cfg.replace(**overrides)
    except ConfigError as err:
        parser.error(str(err))
    if args.matmul_dtype is not None:  # e.g. evaluate a float32-trained model in bfloat16
        from .config import product_mode

        mm, two_parts = product_mode(args.matmul_dtype)
        try:
            cfg = cfg.replace(eval_matmul_dtype=args.matmul_dtype)
            model.matmul_dtype = mm
            model.split_products = two_parts
        except (ConfigError, ValueError) as err:
            parser.error(str(err))
    if args.early_exit is not None and not args.early_exit > 0:
        parser.error(f"--early-exit must be a tolerance > 0 (e.g. 1e-4), got {args.early_exit}")
    split = load_split(cfg, args.split, letters_eps=0.0)
    rows = _eval_rows(model, cfg, split, args.eps_test, args.seed, tol=args.early_exit)
    if args.json:
        print(json.dumps(rows))
    else:
        _print_table(rows, EVAL_COLUMNS)
        if args.early_exit:
            print("work_fraction = matrix products done / those of the fixed-step run")
    return 0


def _cmd_classify(args, parser) -> int:
    from .classify import classify, load_classifier, plot_trajectories, read_images

    if not args.images and not args.test_images:
        parser.error("give image files / .npy arrays, or --test-images N")
    if args.test_images is not None and args.test_images < 1:
        parser.error(f"--test-images must be >= 1, got {args.test_images}")
    classifier = load_classifier(args.model, t_eval=args.t_eval)
    xs, names, labels = [], [], []
    if args.images:
        invert = {"auto": None, "yes": True, "no": False}[args.invert]
        x, names = read_images(args.images, classifier.num_nodes, invert=invert)
        xs.append(x)
        labels += [None] * len(names)
    if args.test_images:
        from .datasets import load_split

        settings = {"dataset": classifier.dataset, "mirror": args.mirror}
        if args.data_root:
            settings["data_root"] = args.data_root
        split = load_split(TrainConfig.from_dict(settings), "test", letters_eps=0.0)
        xs.append(split.x[: args.test_images])
        names += [f"{classifier.dataset}-test[{i}]" for i in range(len(xs[-1]))]
        labels += split.y[: args.test_images].tolist()
    import torch

    x = torch.cat(xs)
    result = classify(classifier, x)
    rows = [
        {"image": name, "label": "" if label is None else label, "class": k,
         "overlap": q, "bucket": b if label in (None, k) else "wrong", "nearest": n}
        for name, label, k, q, b, n in zip(names, labels, result.predicted, result.overlap,
                                           result.bucket, result.nearest, strict=True)
    ]  # fmt: skip
    if args.json:
        print(json.dumps(rows))
    else:
        _print_table(rows, ["image", "label", "class", "overlap", "bucket", "nearest"])
    if args.plot:
        plot_trajectories(classifier, x, names, args.plot)
        print(f"trajectories: {args.plot}")
    return 0


def _cmd_bench(args, parser) -> int:
    from .bench import run_benchmark
    from .config import resolve_device

    run_benchmark(
        n=args.n,
        k=args.k,
        batch=args.batch,
        steps=args.steps,
        dtypes=args.dtypes,
        naive=args.naive,
        repeats=args.repeats,
        threads=args.threads,
        out=args.out,
        device=str(resolve_device(args.device)),
        precision=args.matmul_precision,
        memory=args.memory,
        eval_batch=args.eval_batch,
        eval_steps=args.eval_steps,
        eval_tol=args.eval_tol,
    )
    return 0


def _cmd_time_to_accuracy(args, parser) -> int:
    from .time_to_accuracy import time_to_accuracy

    cfg = _config_from_args(args, parser)
    out_dir = Path(args.out or f"runs/tta/{cfg.dataset}-{cfg.matmul_dtype or cfg.dtype}")
    summary = time_to_accuracy(
        cfg,
        out_dir,
        target=args.target,
        val_fraction=args.val_fraction,
        stop_at_target=args.stop_at_target,
        t_test=args.t_test,
        test_tol=args.test_tol,
        compare_dtypes=args.compare_dtypes,
        progress=not args.quiet,
    )
    reached = summary["time_to_target_s"]
    test = summary["test"]
    print(
        f"{summary['dataset']}, {summary['matmul_dtype']} training products, "
        f"{summary['eval_matmul_dtype']} evaluation: validation H >= {args.target:.3f} "
        + (
            f"after {summary['epochs_to_target']} epochs, {reached:.0f} s"
            if reached is not None
            else f"not reached in {summary['epochs_run']} epochs "
            f"(best {summary['best_val_accuracy']:.4f})"
        )
        + f"; test H {test['accuracy']:.4f} ({test['exact']}/{test['partial']}/{test['wrong']}) "
        f"after {summary['epochs_run']} epochs, {summary['train_wall_s']:.0f} s"
    )
    print("validation H levels: " + ", ".join(
        f"{level} " + (f"epoch {hit['epoch']} ({hit['wall_s']:.0f} s)" if hit else "not reached")
        for level, hit in summary["levels"].items()))  # fmt: skip
    for sw in summary.get("eval_switches", []):
        print(
            f"evaluated with {sw['eval_matmul_dtype']} products instead: test H "
            f"{sw['test']['accuracy']:.4f}, {sw['items_changing_bucket']} items change bucket, "
            f"{sw['sign_flips']} of {sw['signs']} final signs flip"
        )
    print(f"result: {out_dir / 'result.json'}")
    return 0


def _load_yaml(path: Path, parser: argparse.ArgumentParser, flag: str) -> object:
    """The YAML document at ``path``; a missing file or a syntax error is one line naming the
    file and the line."""
    import yaml

    if not path.is_file():
        parser.error(f"{flag} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        parser.error(f"{flag} {path}{line}: not valid YAML ({getattr(err, 'problem', err)})")


def _cmd_check_config(args, parser) -> int:
    from .study import PipelineConfigError
    from .validate import validate_config

    schema = Path(args.schema)
    for path in map(Path, args.configs):
        config = _load_yaml(path, parser, "config")
        if not isinstance(config, dict):
            parser.error(f"config {path}: must hold a mapping (project, studies, ...)")
        try:
            validate_config(config, schema=schema if schema.is_file() else None, source=str(path))
        except PipelineConfigError as err:
            print(err, file=sys.stderr)
            return 2
        print(f"{path}: valid")
    return 0


def _cmd_report(args, parser) -> int:
    from .report import doc_files, render

    root = Path(args.root)
    changed = render(root, write=not args.check)
    rel = [str(p.relative_to(root.resolve())) for p in changed]
    if args.check:
        if rel:
            print(f"out of date with the tables: {', '.join(rel)}; run `sanode report` and "
                  "commit the result", file=sys.stderr)  # fmt: skip
            return 1
        print(f"{len(doc_files(root))} file(s) agree with the tables")
        return 0
    print(f"rewrote {', '.join(rel)}" if rel else "every generated block was up to date")
    return 0


def _optional_float(text: str) -> float | None:
    return None if text.lower() in _NONE_WORDS else float(text)


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"noise levels lie in [0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sanode", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model and write its checkpoint")
    p.add_argument("--out", help="checkpoint path (default runs/<dataset>/model.pt)")
    p.add_argument(
        "--no-resume", action="store_true", help="start over even if the checkpoint exists"
    )
    p.add_argument("--validate", action="store_true", help="score the test split after every epoch")
    p.add_argument(
        "--eps-test",
        type=_unit_interval,
        nargs="*",
        default=[0.0],
        help="test noise levels of the final bucket table (default 0.0)",
    )
    _add_training_arguments(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "time-to-accuracy",
        help="wall time from a fresh model to a validation H target, and the final test H",
    )
    p.add_argument("--out", help="run folder (default runs/tta/<dataset>-<matmul dtype>)")
    p.add_argument("--target", type=_unit_interval, default=0.97, help="validation H target")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share of train")
    p.add_argument(
        "--stop-at-target", action="store_true", help="stop at the target, not the schedule's end"
    )
    p.add_argument("--t-test", type=float, default=120.0, help="test evaluation horizon")
    p.add_argument(
        "--test-tol", type=_optional_float, default=1e-4, help="test early-exit tol, or 'none'"
    )
    p.add_argument(
        "--compare-dtypes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score the final model with the other product modes (bucket moves)",
    )
    _add_training_arguments(p)
    p.set_defaults(func=_cmd_time_to_accuracy)

    p = sub.add_parser(
        "check-config",
        help="validate pipeline config files: one line per problem (file, line or key, fix)",
    )
    p.add_argument("configs", nargs="+", metavar="CONFIG")
    p.add_argument("--schema", default="workflow/schemas/config.schema.yaml")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser(
        "classify",
        help="classify images with a trained model: class, sign overlap, bucket, nearest attractor",
    )
    p.add_argument("model", help="a checkpoint file or an MLflow URI (models:/sanode-mnist/latest)")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="PNG/JPEG files or .npy arrays")
    p.add_argument("--test-images", "--mnist-test", type=int, metavar="N",
                   help="also the first N test images of the model's data set")  # fmt: skip
    p.add_argument(
        "--invert",
        choices=["auto", "yes", "no"],
        default="auto",
        help="invert pictures to bright ink on dark (auto: when the border is light)",
    )
    p.add_argument("--t-eval", type=float, help="integration horizon (default: the model's)")
    p.add_argument("--mirror", help="mirror folder of the MNIST/Fashion-MNIST IDX files")
    p.add_argument("--data-root", help="data folder for --test-images")
    p.add_argument("--plot", metavar="PNG", help="draw input, x(t) snapshots, final state")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("evaluate", help="print the accuracy buckets of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--eps-test", type=_unit_interval, nargs="+", default=[0.0])
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--t-eval", type=float, help="evaluation horizon (default: the checkpoint's)")
    p.add_argument("--dt", type=float)
    p.add_argument("--method", choices=["euler", "rk4"])
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="first test-noise draw (as the evaluate block's seed: same inputs)",
    )
    p.add_argument("--mirror", help="mirror folder of the MNIST/Fashion-MNIST IDX files")
    p.add_argument("--data-root", help="data folder (default: the checkpoint's)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument(
        "--early-exit",
        type=float,
        metavar="TOL",
        help="stop each item once max|F(x)| < TOL (t-eval stays the upper bound)",
    )
    p.add_argument(
        "--matmul-precision",
        choices=["highest", "high", "medium"],
        help="float32 matmul precision: high = TF32 on CUDA (default: the checkpoint's)",
    )
    p.add_argument(
        "--matmul-dtype",
        choices=["float32", "bfloat16", "bfloat16x2"],
        help="dtype of the matrix products (default: the checkpoint's eval_matmul_dtype); "
        "bfloat16x2: two bfloat16 products, A split in a high and a low part; float32 loops only",
    )
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "bench", help="training-step throughput beside the naive variant and the matmul roofline"
    )
    p.add_argument("--n", type=int, default=784)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--steps", type=int, nargs="+", default=[55, 600])
    p.add_argument(
        "--dtypes",
        nargs="+",
        choices=["float32", "float64", "bfloat16"],
        default=["float32", "bfloat16", "float64"],
        help="bfloat16: float32 loop with bfloat16 matrix products",
    )
    p.add_argument(
        "--naive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the authors' per-step-inverse variant (55 steps)",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument(
        "--matmul-precision",
        choices=["highest", "high", "medium"],
        default="highest",
        help="float32 matmul precision (high = TF32 on CUDA)",
    )
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure each training row's peak memory in a fresh process",
    )
    p.add_argument("--eval-batch", type=int, default=1000)
    p.add_argument(
        "--eval-steps", type=int, default=1200, help="evaluation horizon in steps (0: no eval rows)"
    )
    p.add_argument(
        "--eval-tol", type=_optional_float, default=1e-4, help="early-exit tolerance, or 'none'"
    )
    p.add_argument("--out", help="also write the table as JSON here")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "report",
        help="render the tables of README.md and docs/ from the results (between report markers)",
    )
    p.add_argument("--root", default=".", help="project root (default: the current folder)")
    p.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file is out of date"
    )
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .data import DataError
    from .files import DiskFullError
    from .train import DivergenceError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args, parser)
    except (DataError, ConfigError, FileNotFoundError, ValueError) as err:  # ClassifyError too
        if args.debug:
            raise
        print(f"sanode: error: {err}", file=sys.stderr)
        return 2
    except DivergenceError as err:
        print(f"sanode: training diverged: {err}", file=sys.stderr)
        return 1
    except DiskFullError as err:
        print(f"sanode: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sanode: interrupted; the last checkpoint is kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
