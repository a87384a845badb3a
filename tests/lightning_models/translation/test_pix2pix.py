"""pix2pix: the L1 term on hand-made networks and conditional discriminators that judge (input, output) pairs.
(The step order, schedule and translate contract shared with CycleGAN: translation/test_base.py.)"""

import pytest
import torch
import torch.nn as nn

from lightning_models.losses import lsgan_discriminator
from lightning_models.networks.translation import UNetGenerator
from lightning_models.translation.pix2pix import Pix2Pix
from tests.helpers import one_thread  # noqa: F401 (autouse: one torch thread)
from tests.lightning_models.translation.fixtures import Shift, tiny


class PairCritic(nn.Module):
    """A hand-made conditional discriminator: mean of (output channels - input channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x)
        return (x[:, 3:] - x[:, :3]).mean((1, 2, 3))


def paired_batch():
    real_a = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return real_a, real_a + 0.1  # a "pair": B is A shifted by 0.1


def test_l1_term_on_shifting_generators():
    model = tiny(Pix2Pix, l1_weight=2.0)
    model.generator_ab, model.generator_ba = Shift(0.5), Shift(-0.25)
    real_a, real_b = paired_batch()
    fake_b, fake_a = model.generator_ab(real_a), model.generator_ba(real_b)
    terms = model.reconstruction_losses(real_a, real_b, fake_a, fake_b)
    # |a + 0.5 - (a + 0.1)| = 0.4 and |(a + 0.1) - 0.25 - a| = 0.15
    torch.testing.assert_close(terms["l1"], torch.tensor(2.0 * (0.4 + 0.15)))
    assert tiny(Pix2Pix, l1_weight=0.0).reconstruction_losses(real_a, real_b, fake_a, fake_b) == {}
    with pytest.raises(ValueError, match="--model.l1_weight"):
        tiny(Pix2Pix, l1_weight=-1.0)


def test_discriminators_judge_input_output_pairs():
    model = tiny(Pix2Pix)
    assert isinstance(model.generator_ab, UNetGenerator)  # pix2pix's default
    assert model.discriminator_a.layers[0].in_channels == 6  # input and output stacked
    critic = PairCritic()
    real_a, real_b = paired_batch()
    fake_b = real_a + 0.3
    loss = model.discriminator_loss(critic, real_b, fake_b, real_a, rng=None)
    real_pair, fake_pair = critic.inputs
    assert torch.equal(real_pair, torch.cat([real_a, real_b], 1))
    assert torch.equal(fake_pair, torch.cat([real_a, fake_b], 1))
    # the critic scores 0.1 for the real pair and 0.3 for the fake one
    torch.testing.assert_close(loss, lsgan_discriminator(torch.full((2,), 0.1), torch.full((2,), 0.3)))
