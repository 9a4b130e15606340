"""The numerical routines of the analyses (sanode.probes) against known answers."""

import math

import pytest
import torch

from sanode import SANode, block_patterns
from sanode.config import TrainConfig
from sanode.data.datasets import load_split
from sanode.data.letters import letter_images
from sanode.probes import baselines, cases, census, inversion, mse_time, perturbation, timestep
from sanode.training.evaluate import evaluate
from sanode.training.train import train


@pytest.fixture(scope="module")
def letters_model():
    cfg = TrainConfig(
        dataset="letters", letters_copies=20, batch_size=25, lr=3e-2, epochs=15, eps_train=0.1
    )
    split = load_split(cfg, "train")
    return train(cfg, split.x, split.y, split.patterns, progress=False).model


def test_mse_over_time_clean_letter_ends_on_its_attractor(letters_model):
    image = letter_images()[3]  # D
    curves, finals = mse_time.mse_over_time(
        letters_model, image, 3, eps_test=[0.0, 0.6], items=40, t_end=20.0, dt=0.1, every=10
    )
    assert sorted(curves["eps_test"].unique()) == [0.0, 0.6]
    clean = curves[curves["eps_test"] == 0.0]
    assert list(clean["t"])[:2] == [0.0, 1.0] and clean["t"].max() == pytest.approx(20.0)
    assert clean["mse"].iloc[-1] < 1e-6 and clean["mse_std"].iloc[-1] < 1e-6  # 40 equal copies
    assert finals[finals["eps_test"] == 0.0]["on_target"].all()
    noisy = finals[finals["eps_test"] == 0.6]
    assert len(noisy) == 40 and noisy["final_mse"].mean() > clean["mse"].iloc[-1]
    # the final MSE of the table is the curve's last point
    last = curves[curves["eps_test"] == 0.6]["mse"].iloc[-1]
    assert noisy["final_mse"].mean() == pytest.approx(last)


def test_unperturbed_coefficient_gives_the_unperturbed_mse(letters_model):
    image = letter_images()[0]
    table = perturbation.single_coefficient(
        letters_model, image, 0, sigmas=[0.0, 1.0], samples=3, t_end=20.0, dt=0.1
    )
    assert len(table) == 49 * 2 and sorted(table["rank"].unique()) == list(range(49))
    zero = table[table["sigma"] == 0.0]
    assert (zero["mse"] - zero["mse_unperturbed"]).abs().max() < 1e-9
    # the ranking orders the coefficients by their MSE at the largest sigma
    big = table[table["sigma"] == 1.0].sort_values("rank")
    assert big["mse"].is_monotonic_increasing
    x = image.to(torch.float64)
    c = perturbation.coefficients(letters_model, x)
    assert torch.allclose(letters_model.basis().detach() @ c, x, atol=1e-10)


def test_collective_perturbation_starts_at_zero_degradation(letters_model):
    image = letter_images()[0]
    order = list(range(49))
    curve = perturbation.collective(
        letters_model, image, 0, order, sigma=1.0, samples=4, t_end=20.0, dt=0.1
    )
    assert len(curve) == 50 and curve["degradation"].iloc[0] == 0.0 and curve["within"].iloc[0]
    f = perturbation.robust_fraction(curve)
    assert 0.0 <= f <= 1.0
    assert curve[curve["fraction"] <= f]["within"].all()  # within is a prefix
    with pytest.raises(ValueError, match="permutation"):
        perturbation.collective(letters_model, image, 0, [0, 0], sigma=1.0, samples=1,
                                t_end=1.0, dt=0.1)  # fmt: skip


def test_three_cases_pick_one_item_per_bucket():
    patterns = block_patterns(40, 2, 0.5)
    final = torch.stack([patterns[0], patterns[1], patterns[0].clone(), patterns[1].clone()])
    final[2, 0] *= -1  # one pixel wrong: overlap 0.95 -> partial
    final[3, :20] *= -1  # half wrong
    labels = torch.tensor([0, 1, 0, 1])
    overlap = (torch.sign(final) * torch.sign(patterns[labels])).mean(dim=1)
    table = cases.three_cases(final, final, overlap, labels, patterns)
    picked = table.drop_duplicates("case").set_index("case")["item"].to_dict()
    assert picked == {"exact": 0, "partial": 2, "wrong": 3}
    assert set(table["panel"]) == {"input", "final", "target"}
    assert len(table) == 3 * 3 * 40


def test_rk4_and_euler_converge_at_their_order():
    patterns = block_patterns(20, 3, 0.5)
    model = SANode(patterns, dtype=torch.float64, eig_mean=-1.0, clip=None, seed=0)
    x = torch.rand(8, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.zeros(8, dtype=torch.int64)
    table = timestep.timestep_convergence(
        model, x, y, t=2.0, dts=[0.1, 0.05, 0.025, 0.0125], methods=["euler", "rk4"],
        reference_dt=0.001,
    )  # fmt: skip
    orders = timestep.fitted_order(table)
    assert orders["rk4"] == pytest.approx(4.0, abs=0.3)
    assert orders["euler"] == pytest.approx(1.0, abs=0.15)
    assert (table["mse"] - table["reference_mse"]).abs().max() < 0.1
    with pytest.raises(ValueError, match="divide"):
        timestep.timestep_convergence(model, x, y, t=1.0, dts=[0.3], methods=["rk4"],
                                      reference_dt=0.01)  # fmt: skip


def test_inversion_at_short_horizon_recovers_the_input_to_rounding(letters_model):
    image = letter_images()[1]
    grid = inversion.inversion_grid(
        letters_model, image, t_invs=[0.001], dts=[0.001], dtypes=["float64", "float32"]
    )  # one RK4 step there and back: O(dt^5) = 1e-15, i.e. rounding
    short = grid.set_index("dtype")["max_error"]
    assert short["float64"] < 1e-13 and short["float32"] < 1e-6
    grid = inversion.inversion_grid(
        letters_model, image, t_invs=[0.5, 2.0], dts=[0.01], dtypes=["float64"]
    )
    assert grid["max_error"].max() < 1e-6  # RK4 at dt = 0.01 both ways
    images = inversion.inversion_images(letters_model, image, t_invs=[0.5], dt=0.01)
    rec = images[images["panel"] == "recovered"]["value"].to_numpy()
    assert abs(rec - image.double().numpy()).max() < 1e-8
    traj = inversion.pixel_trajectories(letters_model, image, t_end=1.0, dt=0.1, every=5)
    assert len(traj) == 3 * 49 and sorted(traj["t"].unique()) == pytest.approx([0.0, 0.5, 1.0])


def test_baselines_match_the_parameter_budget_and_learn_letters():
    assert baselines.sanode_parameter_count(784, 10) == 784 * 774 + 774 + 1
    h = baselines.mlp_hidden_for(49, 5, baselines.sanode_parameter_count(49, 5))
    mlp = baselines.build_baseline("mlp", 49, 5)
    count = sum(p.numel() for p in mlp.parameters())
    assert abs(count - baselines.sanode_parameter_count(49, 5)) <= 49 + 1 + 5 and h == 40
    cfg = TrainConfig(dataset="letters", letters_copies=20)
    split = load_split(cfg, "train")
    for kind in baselines.KINDS:
        fit = baselines.train_baseline(kind, split.x, split.y, 5, eps_train=0.1, epochs=30,
                                       batch_size=25, lr=1e-2)  # fmt: skip
        assert fit.epoch == fit.epochs_run == 30  # no validation: every epoch, the last one
        table = baselines.evaluate_baseline(fit.model, split.x, split.y, eps_test=[0.0, 1.0])
        assert table["accuracy"].iloc[0] == 1.0
        assert table["accuracy"].iloc[1] < 0.6  # pure noise: near chance
    with pytest.raises(ValueError, match="patience"):
        baselines.train_baseline("mlp", split.x, split.y, 5, eps_train=0.0, epochs=2,
                                 batch_size=25, lr=1e-2, patience=0)  # fmt: skip
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.build_baseline("svm", 4, 2)


def test_baselines_train_to_the_validation_chosen_epoch_and_share_the_test_draws():
    """With a validation split the best epoch's weights are kept and training stops after
    ``patience`` epochs without a better one; every test draw is the SA-nODE's own (seed + r,
    level i), so the baselines score on exactly its noisy images."""
    from sanode.core.noise import add_pixel_noise, noise_generator

    cfg = TrainConfig(dataset="letters", letters_copies=20)
    train_split, val_split = load_split(cfg, "train"), load_split(cfg, "test", letters_eps=0.2)
    fit = baselines.train_baseline("mlp", train_split.x, train_split.y, 5, eps_train=0.3,
                                   epochs=200, batch_size=25, lr=1e-2,
                                   val=(val_split.x, val_split.y), patience=3)  # fmt: skip
    assert 1 <= fit.epoch <= fit.epochs_run < 200  # converged: stopped early
    assert fit.epochs_run - fit.epoch <= 3 and 0.0 < fit.val_accuracy <= 1.0
    table = baselines.evaluate_baseline(fit.model, val_split.x, val_split.y,
                                        eps_test=[0.0, 0.5], seed=4, noise_seeds=2)  # fmt: skip
    assert list(zip(table["noise_seed"], table["eps_test"], strict=True)) == [
        (4, 0.0), (4, 0.5), (5, 0.0), (5, 0.5)]  # fmt: skip
    # the second draw at level 1 is noise_generator(5, 1)'s, the SA-nODE's draw
    noisy = add_pixel_noise(val_split.x, 0.5, noise_generator(5, 1))
    with torch.no_grad():
        want = float((fit.model(noisy.float()).argmax(1) == val_split.y).double().mean())
    assert table["accuracy"].iloc[3] == want


def test_census_of_planted_patterns_and_a_spurious_origin():
    patterns = block_patterns(20, 3, 0.5)
    model = SANode(patterns, dtype=torch.float64, seed=0)
    inputs = torch.cat([patterns, torch.zeros(1, 20)])  # x = 0 is a fixed point, not planted
    result = census.attractor_census(model, inputs, t_end=20.0, dt=0.1, tol=1e-6)
    assert result == {
        "n": 4,
        "planted": 3,
        "spurious": 1,
        "not_converged": 0,
        "distinct_spurious": 1,
        "planted_fraction": 0.75,
    }
    slow = census.attractor_census(model, torch.rand(5, 20, dtype=torch.float64), t_end=0.2,
                                   dt=0.1, tol=1e-9)  # fmt: skip
    assert slow["not_converged"] == 5
    sets = census.census_inputs(torch.rand(10, 20), 7, seed=1)
    assert {k: tuple(v.shape) for k, v in sets.items()} == {"random": (7, 20),
                                                            "out_of_class": (7, 20)}  # fmt: skip


def test_trained_letters_model_is_certified_stable(letters_model):
    report = letters_model.stability_report()
    assert report["max_real_jacobian_eig"] < 0
    assert math.isfinite(report["relaxation_time"])
    ev = evaluate(letters_model, letter_images(), torch.arange(5), t_end=20.0, dt=0.1)
    assert ev.buckets.exact == 5
