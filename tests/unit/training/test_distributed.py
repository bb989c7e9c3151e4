"""training.distributed: torchrun's environment read, and each rank's share of an epoch."""

from __future__ import annotations

import numpy as np
import torch

from training.distributed import World, mean_across, shard, unwrap, weights_digest, world_from_env


def test_world_from_torchrun_variables() -> None:
    assert world_from_env({}) == World(0, 1, 0)
    assert not world_from_env({}).distributed and world_from_env({}).is_main
    world = world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert world == World(rank=3, size=4, local_rank=1)
    assert world.distributed and not world.is_main


def test_shards_cover_every_row_with_equal_sizes() -> None:
    order = np.random.default_rng(0).permutation(10)
    shards = [shard(order, World(rank, 3, 0)) for rank in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert set(np.concatenate(shards).tolist()) == set(range(10))
    # The two rows that fill the last round are the head of the order.
    padded = np.concatenate([order, order[:2]])
    assert sorted(np.concatenate(shards).tolist()) == sorted(padded.tolist())
    assert shard(order, World()) is order


def test_single_process_helpers_are_no_ops() -> None:
    assert mean_across(1.5, World()) == 1.5
    model = torch.nn.Linear(2, 2)
    assert unwrap(model) is model
    same = torch.nn.Linear(2, 2)
    same.load_state_dict(model.state_dict())
    assert weights_digest(model) == weights_digest(same)
    with torch.no_grad():
        same.bias.add_(1)
    assert weights_digest(model) != weights_digest(same)
