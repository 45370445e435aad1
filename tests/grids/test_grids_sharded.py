"""The sharded population: shard actors' partial sums add up to the unsharded population's, a
search over shards selects the same peaks, and a shard actor killed mid-search changes nothing."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from dmr_ray.engine import EngineOptions
from dmr_ray.errors import EngineError, InputError
from dmr_ray.grids.objective import Objective
from dmr_ray.grids.optimizer import grids_search
from dmr_ray.grids.population import LocalPopulation
from dmr_ray.grids.sharded import SurrogatePopulations, shard_rows, sharded_population
from dmr_ray.grids.surrogate import Surrogate, SurrogateConfig, load_surrogate, names_digest, save_surrogate

HERE = Path(__file__).resolve().parent
N_CELLS, N_PEAKS, N_GENES = 60, 40, 6
OBJECTIVE = Objective(gene=2, direction="down")
SEARCH = {"k": 4, "steps": 4, "seed": 3}


def options() -> EngineOptions:
    # the workers import this module (RecordingPopulations) by name
    return EngineOptions(runtime_env={"env_vars": {"PYTHONPATH": f"{HERE}:{os.environ.get('PYTHONPATH', '')}"}},
                         stall_timeout_s=120.0)  # fmt: skip


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, sp.csr_matrix]:
    """A small surrogate (random weights, output bias lifted so the target is never clamped) and ATAC."""
    import torch

    chromosomes = ("chr1", "chr2", "chr3")
    block = np.repeat(np.arange(3), [15, 15, 10])
    config = SurrogateConfig(
        N_PEAKS, N_GENES, chromosomes, names_digest(["p"]), names_digest(["g"]), embed_dim=4, block_dim=8,
        latent_dim=6, rna_hidden=(16, 8), n_experts=2, gate_hidden=8,
    )  # fmt: skip
    model = Surrogate(config, block, seed=5)
    with torch.no_grad():
        model.rna_output.bias.add_(3.0)
    directory = tmp_path_factory.mktemp("surrogate")
    save_surrogate(model, directory)
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((N_CELLS, N_PEAKS)) < 0.4).astype(np.float32))
    return directory, x


@dataclass(frozen=True)
class RecordingPopulations(SurrogatePopulations):
    """Also writes the pid of every actor that builds a shard into ``record``."""

    record: str = ""

    def __call__(self, x: sp.csr_matrix):
        Path(self.record, str(os.getpid())).write_text("up")
        return super().__call__(x)


def test_shards_are_near_equal_contiguous_blocks_and_never_empty() -> None:
    blocks = shard_rows(7, 3)
    assert [b.tolist() for b in blocks] == [[0, 1, 2], [3, 4], [5, 6]]
    with pytest.raises(InputError, match="shards: need 1..2 shards for 2 cells, got 3"):
        shard_rows(2, 3)


def test_shard_sums_add_up_to_the_unsharded_population(population) -> None:
    directory, x = population
    whole = LocalPopulation(load_surrogate(directory), x, OBJECTIVE)
    build = SurrogatePopulations(str(directory), OBJECTIVE)
    with sharded_population(build, x, 3, EngineOptions(actors=0)) as local:  # three shards in this process
        assert local.n_cells == N_CELLS and local.n_peaks == N_PEAKS
        r = np.array([1, 17, 33, 8])
        assert local.loss_sum(r) == pytest.approx(whole.loss_sum(r), rel=1e-7)
        sums, expected = local.transition_sums(r), whole.transition_sums(r)
        assert sums.n_cells == N_CELLS
        np.testing.assert_allclose(sums.add, expected.add, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(sums.sub, expected.sub, rtol=1e-7, atol=1e-12)
        candidates = np.array([0, 5, 17, 39])
        np.testing.assert_allclose(
            local.candidate_loss_sums(r, 2, candidates), whole.candidate_loss_sums(r, 2, candidates), rtol=1e-7
        )


def test_a_search_over_shard_actors_equals_the_unsharded_search_even_when_an_actor_is_killed(
    ray_local, population, tmp_path: Path
) -> None:
    directory, x = population
    reference = grids_search(LocalPopulation(load_surrogate(directory), x, OBJECTIVE), 4, **SEARCH)
    build = RecordingPopulations(str(directory), OBJECTIVE, record=str(tmp_path))
    killed: list[int] = []

    def kill_one_actor(info) -> None:
        if not killed:
            killed.append(int(sorted(tmp_path.iterdir())[0].name))
            os.kill(killed[0], signal.SIGKILL)

    with sharded_population(build, x, 2, options()) as sharded:
        result = grids_search(sharded, 4, on_step=kill_one_actor, **SEARCH)
    assert killed and len(list(tmp_path.iterdir())) == 3  # two shards set up, one of them again after the kill
    np.testing.assert_array_equal(result.selected, reference.selected)
    assert result.train_loss == pytest.approx(reference.train_loss, rel=1e-7)


def test_more_shards_than_the_placement_groups_free_bundles_are_refused(ray_local) -> None:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from dmr_ray.grids.sharded import check_shard_capacity

    @ray.remote(num_cpus=0.25)
    def refusal(n_shards: int) -> str:
        try:
            check_shard_capacity(n_shards)
        except EngineError as err:
            return str(err)
        return ""

    group = placement_group([{"CPU": 0.25}, {"CPU": 0.5}])  # a trial: the driver's bundle and one shard's
    ray.get(group.ready())
    try:
        inside = refusal.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group))
        assert ray.get(inside.remote(1)) == ""
        assert "2 shard actors asked for, but the trial's placement group has 1 free bundle(s)" in ray.get(
            inside.remote(2)
        )
    finally:
        remove_placement_group(group)
