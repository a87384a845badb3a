"""ImagePool: filling, swap probability, conservation of images with repeated slots, state in checkpoints."""

import pytest
import torch

from lightning_models.translation.pool import ImagePool

SHAPE = (1, 2, 2)


def numbered(ids) -> torch.Tensor:
    """Images whose every pixel is their id, so an image can be told apart after the pool moved it."""
    return torch.as_tensor(ids, dtype=torch.float32)[:, None, None, None].expand(-1, *SHAPE).clone()


def ids_of(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].long().tolist()


def test_returns_and_stores_the_input_while_filling():
    pool = ImagePool(5, SHAPE)
    assert ids_of(pool.query(numbered([1, 2, 3]))) == [1, 2, 3]
    assert int(pool.count) == 3
    # 2 more fill the pool and come back as they are; the third finds it full and may be swapped
    out = pool.query(numbered([4, 5, 6]), torch.Generator().manual_seed(0))
    assert ids_of(out)[:2] == [4, 5] and int(pool.count) == 5
    assert sorted(ids_of(pool.images)) == sorted({1, 2, 3, 4, 5, 6} - set(ids_of(out)[2:]))


def test_size_zero_passes_through():
    images = torch.rand(4, *SHAPE)
    assert torch.equal(ImagePool(0, SHAPE).query(images), images)


def test_full_pool_swaps_with_probability_one_half():
    pool = ImagePool(10, SHAPE)
    pool.query(numbered(range(10)))
    out = pool.query(numbered(range(100, 4100)), torch.Generator().manual_seed(1))
    swapped = (torch.tensor(ids_of(out)) != torch.arange(100, 4100)).float().mean()
    assert 0.47 < swapped < 0.53


@pytest.mark.parametrize("seed", range(3))
def test_every_image_is_returned_or_kept_exactly_once_even_when_slots_repeat(seed):
    # 3 slots and 40 new images: many swaps draw the same slot within one batch (the sequential rule must hold)
    pool = ImagePool(3, SHAPE)
    pool.query(numbered([0, 1, 2]))
    new = list(range(10, 50))
    out = pool.query(numbered(new), torch.Generator().manual_seed(seed))
    assert sorted(ids_of(out) + ids_of(pool.images)) == [0, 1, 2, *new]
    # an image swapped out comes back later in the batch order than when it went in
    for position, image_id in enumerate(ids_of(out)):
        assert image_id < 10 or new.index(image_id) <= position


def test_draws_come_from_the_generator_and_the_state_is_in_the_state_dict():
    a, b = ImagePool(4, SHAPE), ImagePool(4, SHAPE)
    a.query(numbered(range(6)), torch.Generator().manual_seed(0))
    b.load_state_dict(a.state_dict())  # what a checkpoint restores
    new = numbered(range(10, 30))
    out_a = a.query(new, torch.Generator().manual_seed(5))
    out_b = b.query(new, torch.Generator().manual_seed(5))
    assert torch.equal(out_a, out_b) and torch.equal(a.images, b.images)
    assert set(a.state_dict()) == {"images", "count"}


def test_negative_size_names_the_option():
    with pytest.raises(ValueError, match="--model.pool_size"):
        ImagePool(-1, SHAPE)
