import torch

from lightning_models.latent.split_rows import SplitRows, fingerprint_weights, image_fingerprint


def _int64_keys(images: torch.Tensor) -> torch.Tensor:
    """The fingerprint's definition, summed in int64."""
    flat = images.flatten(1).mul(255).round().long()
    return (flat * fingerprint_weights(flat.shape[1])).sum(1)


def test_fingerprint_is_the_exact_integer_projection():
    gen = torch.Generator().manual_seed(0)
    for shape in ((1, 28, 28), (3, 64, 64)):  # 3x64x64 white: the largest sum, 255 x 12,288 weights near 2**31
        images = torch.randint(0, 256, (50, *shape), generator=gen, dtype=torch.uint8).float() / 255
        images[0] = 1.0
        keys = image_fingerprint(images)
        assert keys.dtype == torch.int64 and torch.equal(keys, _int64_keys(images))
        nudged = images[1:2].clone()
        nudged[0, 0, 5, 7] += 1 / 255 if nudged[0, 0, 5, 7] < 1 else -1 / 255  # one gray level in one pixel
        assert image_fingerprint(nudged) != keys[1]
    big = fingerprint_weights(3 * 128 * 128)  # past 16,448 values the weights shrink so sums stay below 2**53
    assert int(big.max()) * 255 * big.numel() < 2**53


def test_split_rows_finds_batches_in_any_order():
    gen = torch.Generator().manual_seed(1)
    split = torch.randint(0, 256, (300, 1, 28, 28), generator=gen, dtype=torch.uint8)
    rows = SplitRows(split)
    wanted = torch.randperm(300, generator=gen)[:64]
    assert torch.equal(rows.find(split[wanted].float() / 255), wanted)
    stranger = split[wanted].float() / 255
    stranger[3] = 1 - stranger[3]
    assert rows.find(stranger) is None  # an image not in the split
    assert rows.find(torch.zeros(4, 1, 32, 32)) is None  # another image size
