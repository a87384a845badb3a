"""`cli.py test`'s restoration scores (lightning_models/inversion/evaluation.py) on cases whose answer is known: a
linear generator whose range holds the test images (tests/lightning_models/inversion/fixtures.py)."""

import math

import pytest
import torch

from lightning_models.inversion.restoration import center_mask
from tests.lightning_models.inversion.fixtures import LinearImageGenerator, known_inverter, range_images
from tests.helpers import one_thread  # noqa: F401 (autouse: one torch thread)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def scores_of(model, images):
    """Every score of `test_step` on one batch, as `cli.py test` logs them."""
    with torch.inference_mode():  # as Lightning's test loop runs it
        model.test_step({"image": images}, 0)
    return {name: float(model.test_metric(name).compute()) for name in model.test_metric_names}


def test_denoising_gains_the_projection_onto_the_range_and_known_pixels_determine_the_hole():
    model = known_inverter(optim_steps=100, restarts=2)
    images = range_images(model, 8)
    scores = scores_of(model, images)
    # clean images of the range are inverted exactly, from random starts or the encoder's (50 dB: an RMS error
    # of 0.3% of the range)
    assert scores["psnr_optim"] > 50 and scores["psnr_hybrid"] > 50
    # Denoising fits the noisy image by least squares (no prior): the projection onto the range, an affine
    # subspace of 8 of the 784 pixel dimensions, keeps 8/784 of the noise's energy, a gain of 10 log10(784 / 8)
    # = 19.9 dB. Measured: +20.8 dB at sigma 0.3 and +18.1 at 0.5 (the noisy image is clamped to [0, 1] before
    # it is scored, which takes away more of its error at 0.5). The encoder's guess alone, a denoiser that skips
    # the fit, gains about 12 dB at sigma 0.3: 15 dB can only be reached by the fit.
    theory = 10 * math.log10(784 / 8)
    for sigma in model.hparams.test_sigmas:
        gain = scores[f"psnr_denoise_sigma{sigma:g}"] - scores[f"psnr_noisy_sigma{sigma:g}"]
        assert 15 <= gain <= theory + 2, (sigma, gain)
    # the 684 known pixels of a 10x10 centre hole determine the 8 latents, so the hole is filled with the truth;
    # the mean fill scores about 22 dB there
    assert scores["psnr_inpaint_hole"] > 50 and scores["psnr_meanfill_hole"] < 30
    assert scores["ssim_inpaint"] > 0.999


def test_hole_psnr_of_a_generator_blind_to_the_hole_is_the_hand_computed_value():
    mask = center_mask((1, 28, 28), 10)
    sighted = known_inverter()
    images = range_images(sighted, 8)  # their holes hold the linear images' values, about 0.5
    model = known_inverter(LinearImageGenerator(blind_hole=mask), optim_steps=20, restarts=2)
    scores = scores_of(model, images)
    # the generator fits the known ring exactly but paints its hole black (0): the hole PSNR is per image
    # 10 log10(1 / mean(truth^2)) over the hole, averaged over the images; the mean fill is far better
    hole = images[..., 9:19, 9:19].flatten(1)
    by_hand = (10 * torch.log10(1 / hole.square().mean(1))).mean()
    assert scores["psnr_inpaint_hole"] == pytest.approx(float(by_hand), rel=1e-5)
    assert scores["psnr_inpaint_hole"] < 10 < 20 < scores["psnr_meanfill_hole"]
    meanfill = images.flatten(1)[:, mask.flatten().bool()].mean(1, keepdim=True)  # each image's known mean
    by_hand = (10 * torch.log10(1 / (hole - meanfill).square().mean(1))).mean()
    assert scores["psnr_meanfill_hole"] == pytest.approx(float(by_hand), rel=1e-5)
