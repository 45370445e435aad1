"""The original's MNIST 8→3 demonstration on scikit-learn's bundled 8×8 digits (grids.md §11).

A small MLP (64 → 32 → 2) learns "8" against "3". GRIDS then looks for the L pixels whose
blanking (p = 0) turns the held-out 8s into 3s: the population is the 8s (split 64/16/20 into
search, eval and test), the per-image loss is the cross-entropy towards "3", and the search runs
on the generic dense autograd population. Random pixels, Saliency (the first-order change of
blanking each pixel alone) and SAGE (sage-importance's permutation estimator, relaxed to
coalitions of at least 64 − L present pixels as in the original) select L pixels too: the
multiome search's baselines (:mod:`~dmr_ray.grids.baselines`) on the same per-image loss (the
original's SAGE scored the cross-entropy towards "8"). The demo reports the fraction of
perturbed test 8s classified as 3 by each, and draws GRIDS' pattern beside SAGE's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TypeVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from dmr_ray._atomic import write_atomic, write_text_atomic
from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.grids.objective import Objective
from dmr_ray.grids.perturb import perturb
from dmr_ray.stage import Stage

CLASSES = ("8", "3")
"""Output columns of the classifier: 0 is "8", 1 is "3"."""

SIDE = 8
"""Images are 8 × 8 pixels."""

T = TypeVar("T")


@dataclass(frozen=True)
class DigitsOptions:
    """Settings of the digits demo.

    Attributes
    ----------
    L
        Pixels to blank (about 8 % of 64, as the original's 64 of 784).
    k
        GRIDS candidates per step.
    steps
        GRIDS steps (None: until a sweep brings no improvement).
    restarts
        GRIDS random restarts.
    train_steps
        Adam steps of the classifier (batch 64, learning rate 1e-3).
    random_draws
        Random pixel sets averaged for the Random baseline.
    sage_permutations
        Permutations of the SAGE estimator (each pixel is scored about permutations · L / 64 times).
    seed
        Seeds the classifier, the splits, GRIDS, Random and SAGE.
    """

    L: int = 6
    k: int = 32
    steps: int | None = None
    restarts: int = 3
    train_steps: int = 500
    random_draws: int = 20
    sage_permutations: int = 10240
    seed: int = 0

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name == "steps" and value is None:
                continue
            least = 0 if spec.name == "seed" else 1
            if not is_int(value) or value < least:
                raise InputError(f"digits {spec.name} must be an integer >= {least}, got {value!r}")
        if self.L >= SIDE * SIDE:
            raise InputError(f"digits L must be below {SIDE * SIDE} pixels, got {self.L}")


@dataclass(frozen=True)
class DigitsData:
    """The 8s and 3s of scikit-learn's digits.

    Attributes
    ----------
    x
        ``float32 [n, 64]`` pixels scaled to [0, 1] (/16).
    y
        ``int64 [n]``: 0 for "8", 1 for "3" (:data:`CLASSES`).
    """

    x: np.ndarray
    y: np.ndarray


def load_eights_and_threes() -> DigitsData:
    """The 174 eights and 183 threes of ``sklearn.datasets.load_digits`` (bundled, no download)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.isin(digits.target, (8, 3))
    x = (digits.data[keep] / 16.0).astype(np.float32)
    y = np.where(digits.target[keep] == 8, 0, 1).astype(np.int64)
    return DigitsData(x=x, y=y)


def split(n: int, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """A seeded random split of ``range(n)`` into parts of the given fractions (the last takes the rest)."""
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.round(np.cumsum(fractions[:-1]) * n).astype(int)
    return [np.sort(part) for part in np.split(order, cuts)]


@dataclass(frozen=True)
class Classifier:
    """The trained 8-vs-3 MLP and its test accuracy.

    Attributes
    ----------
    model
        ``nn.Sequential`` 64 → 32 (ReLU) → 2 logits, in eval mode.
    accuracy
        Fraction of the test images (20 % of the 8s and 3s) classified right.
    train, test
        Indices into :class:`DigitsData` used for training and testing.
    """

    model: nn.Module
    accuracy: float
    train: np.ndarray
    test: np.ndarray


def train_classifier(data: DigitsData, *, steps: int, seed: int) -> Classifier:
    """Fit the MLP on 80 % of ``data`` (Adam, batch 64, seeded) and score it on the rest."""
    train, test = split(len(data.y), (0.8, 0.2), seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(SIDE * SIDE, 32), nn.ReLU(), nn.Linear(32, len(CLASSES)))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    x, y = torch.as_tensor(data.x), torch.as_tensor(data.y)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rows = torch.as_tensor(rng.choice(train, size=min(64, len(train)), replace=False))
        loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x[test]).argmax(dim=1) == y[test]).float().mean())
    return Classifier(model=model, accuracy=accuracy, train=train, test=test)


class TowardsThree(nn.Module):
    """``x [n, 64]`` → ``[n, 1]``: each image's cross-entropy towards "3", as a one-output model.

    With ``Objective(gene=0)`` (down, p = 0) it is the per-image loss every GRIDS population and
    baseline takes.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        target = torch.full((x.shape[0],), CLASSES.index("3"), dtype=torch.int64)
        return nn.functional.cross_entropy(self.model(x), target, reduction="none")[:, None]


def fraction_three(model: nn.Module, x: np.ndarray, pixels: np.ndarray | None = None) -> float:
    """Fraction of the images ``x [n, 64]`` classified as "3" after blanking ``pixels`` (none: as they are)."""
    images = torch.as_tensor(x)
    if pixels is not None:
        images = perturb(images, np.asarray(pixels, np.int64), 0.0)
    with torch.no_grad():
        return float((model(images).argmax(dim=1) == CLASSES.index("3")).float().mean())


@dataclass(frozen=True)
class DigitsResult:
    """What the demo found (also ``digits.json``).

    Attributes
    ----------
    accuracy
        The classifier's test accuracy on 8s and 3s.
    n_eights
        8s in the search, eval and test splits.
    selected
        Per method (``grids``, ``saliency``, ``sage``; ``random``: its first draw), the blanked pixels
        (indices 0..63, row-major).
    fraction_three
        Fraction of the perturbed test 8s classified as "3", per method (``random``: mean over
        draws), and ``before`` (unperturbed).
    sage_overlap
        Pixels GRIDS and SAGE's top L share, as a fraction of L.
    seconds
        Wall time per method.
    """

    accuracy: float
    n_eights: dict[str, int]
    selected: dict[str, list[int]]
    fraction_three: dict[str, float]
    sage_overlap: float
    seconds: dict[str, float]


def run_digits(options: DigitsOptions | None = None) -> tuple[DigitsResult, dict[str, np.ndarray]]:
    """Train the classifier, run GRIDS and the baselines on the 8s, and score them on the test 8s.

    Returns
    -------
    DigitsResult
        The numbers.
    dict
        Images for the figure: ``mean_before`` and ``mean_after`` (``float32 [8, 8]``, the test 8s
        before and after GRIDS' blanking), ``sage`` (``float64 [8, 8]`` SAGE scores).
    """
    from dmr_ray.grids.baselines import random_draws, sage, saliency
    from dmr_ray.grids.optimizer import grids_search
    from dmr_ray.grids.population import AutogradPopulation

    o = options or DigitsOptions()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_eights_and_threes()
        classifier = train_classifier(data, steps=o.train_steps, seed=o.seed)
        loss = TowardsThree(classifier.model).eval()
        loss.requires_grad_(False)
        eights = data.x[data.y == CLASSES.index("8")]
        search, held, test = (eights[part] for part in split(len(eights), (0.64, 0.16, 0.20), o.seed))
        objective = Objective(0)
        x_search = sp.csr_matrix(search)
        seconds: dict[str, float] = {}

        def timed(method: str, select: Callable[[], T]) -> T:
            started = time.perf_counter()
            value = select()
            seconds[method] = time.perf_counter() - started
            return value

        def population(x: np.ndarray) -> AutogradPopulation:
            return AutogradPopulation(lambda v: loss(v)[:, 0], torch.as_tensor(x), objective.p)

        found = timed("grids", lambda: grids_search(
            population(search), o.L, k=o.k, steps=o.steps, restarts=o.restarts, seed=o.seed,
            eval_population=population(held),
        ))  # fmt: skip
        draws = timed("random", lambda: random_draws(loss, x_search, objective, o.L, draws=o.random_draws, seed=o.seed))
        salient = timed("saliency", lambda: saliency(loss, x_search, objective, o.L))
        scores = timed(
            "sage", lambda: sage(loss, x_search, objective, o.L, seed=o.seed, n_permutations=o.sage_permutations)
        )
        chosen = {
            "grids": found.selected,
            "random": draws[0].selected,
            "saliency": salient.selected,
            "sage": scores.selected,
        }
        selected = {method: sorted(int(j) for j in pixels) for method, pixels in chosen.items()}

        model = classifier.model
        fractions = {"before": fraction_three(model, test)}
        fractions.update({m: fraction_three(model, test, np.asarray(s)) for m, s in selected.items()})
        fractions["random"] = float(np.mean([fraction_three(model, test, d.selected) for d in draws]))
        after = perturb(torch.as_tensor(test), np.asarray(selected["grids"]), 0.0).numpy()
    finally:
        torch.set_num_threads(threads)
    result = DigitsResult(
        accuracy=classifier.accuracy,
        n_eights={"search": len(search), "eval": len(held), "test": len(test)},
        selected=selected,
        fraction_three=fractions,
        sage_overlap=len(set(selected["grids"]) & set(selected["sage"])) / o.L,
        seconds=seconds,
    )
    images = {
        "mean_before": test.mean(axis=0).reshape(SIDE, SIDE),
        "mean_after": after.mean(axis=0).reshape(SIDE, SIDE),
        "sage": scores.scores.reshape(SIDE, SIDE),
    }
    return result, images


def draw_figure(result: DigitsResult, images: dict[str, np.ndarray], path: Path) -> None:
    """Write the PNG: mean test 8 before, after GRIDS, GRIDS' mask, SAGE's values with its top L."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def mask(pixels: list[int]) -> np.ndarray:
        m = np.zeros(SIDE * SIDE)
        m[pixels] = 1
        return m.reshape(SIDE, SIDE)

    fractions = result.fraction_three
    panels = [
        (images["mean_before"], f"test 8s ({fractions['before']:.0%} read as 3)", "gray"),
        (images["mean_after"], f"after GRIDS ({fractions['grids']:.0%} read as 3)", "gray"),
        (mask(result.selected["grids"]), f"GRIDS: {len(result.selected['grids'])} pixels", "Reds"),
        (images["sage"], f"SAGE (top L boxed; overlap {result.sage_overlap:.0%})", "viridis"),
    ]
    figure, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    for axis, (image, title, cmap) in zip(axes, panels, strict=True):
        axis.imshow(image, cmap=cmap)
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    for j in result.selected["sage"]:
        row, col = divmod(j, SIDE)
        axes[3].add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    figure.tight_layout()
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)


def write_digits(out: str | Path, options: DigitsOptions | None = None, *, overwrite: bool = False) -> DigitsResult:
    """Run the demo and write ``out/digits.json`` and ``out/digits.png``.

    ``out`` is claimed as a dmr_ray output directory: a directory with other files and no
    dmr_ray marker is refused before anything runs; an unchanged rerun reuses the outputs.
    """
    from dmr_ray.grids.search import claim_output

    o = options or DigitsOptions()
    directory = claim_output(Path(out), "grids_digits", overwrite=overwrite)
    stage = Stage("digits", {"options": asdict(o)}, ("digits.json", "digits.png"), label="digits demo")

    def run() -> str:
        result, images = run_digits(o)
        draw_figure(result, images, directory.root / "digits.png")
        document = {"options": asdict(o), **asdict(result)}
        write_text_atomic(directory.root / "digits.json", json.dumps(document, indent=2) + "\n")
        return f"GRIDS turns {result.fraction_three['grids']:.0%} of the test 8s into 3s"

    directory.run(stage, run)
    return read_digits(directory.root / "digits.json")


def read_digits(path: Path) -> DigitsResult:
    """The :class:`DigitsResult` stored in ``digits.json``."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return DigitsResult(**{f.name: document[f.name] for f in fields(DigitsResult)})
