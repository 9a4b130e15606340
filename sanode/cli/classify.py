"""``sanode classify``: class, sign overlap, bucket and nearest attractor of each image."""

from __future__ import annotations

import argparse
import json
import sys

from ..config import TrainConfig
from .common import print_table

NAME = "classify"


def add(sub) -> None:
    p = sub.add_parser(
        NAME,
        help="classify images with a trained model: class, sign overlap, bucket, nearest attractor",
    )
    p.add_argument("model", help="a checkpoint file or an MLflow URI (models:/sanode-mnist/latest)")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="PNG/JPEG files or .npy arrays")
    p.add_argument(
        "--test-images",
        "--mnist-test",
        type=int,
        metavar="N",
        help="also the first N test images of the model's data set",
    )
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..pipeline.classify import classify, load_classifier, plot_trajectories, read_images

    if not args.images and not args.test_images:
        parser.error("give image files / .npy arrays, or --test-images N")
    if args.test_images is not None and args.test_images < 1:
        parser.error(f"--test-images must be >= 1, got {args.test_images}")
    classifier = load_classifier(args.model, t_eval=args.t_eval)
    xs: list = []
    names: list[str] = []
    labels: list[int | None] = []
    if args.images:
        invert = {"auto": None, "yes": True, "no": False}[args.invert]
        notes: list[str] = []
        x, names = read_images(args.images, classifier.num_nodes, invert=invert, notes=notes)
        for line in notes:  # what was done to fit the pictures to the model, on stderr
            print(f"sanode classify: {line}", file=sys.stderr)
        xs.append(x)
        labels += [None] * len(names)
    if args.test_images:
        from ..data.datasets import load_split

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
        {
            "image": name,
            "label": "" if label is None else label,
            "class": k,
            "overlap": q,
            "bucket": b if label in (None, k) else "wrong",
            "nearest": n,
        }
        for name, label, k, q, b, n in zip(
            names,
            labels,
            result.predicted,
            result.overlap,
            result.bucket,
            result.nearest,
            strict=True,
        )
    ]
    if args.json:
        print(json.dumps(rows))
    else:
        print_table(rows, ["image", "label", "class", "overlap", "bucket", "nearest"])
    if args.plot:
        plot_trajectories(classifier, x, names, args.plot)
        print(f"trajectories: {args.plot}")
    return 0
