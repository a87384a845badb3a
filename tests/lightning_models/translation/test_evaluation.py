"""Translation metrics and pictures (lightning_models/translation/evaluation.py), and `cli.py test` for both configs."""

import glob
import os

import pytest
import torch

from datamodules.colored_mnist import dominant_color, paint
from lightning_models.translation.evaluation import METRICS, TranslationMetrics, first_of_each_class, mask_iou, strips
from tests.helpers import CONFIGS, run_cli, tiny_args
from tests.helpers import one_thread  # noqa: F401 (autouse: one torch thread)
from tests.lightning_models.translation.fixtures import datamodule

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
TRANSLATION_CONFIGS = [c for c in CONFIGS if os.path.basename(c) in ("cyclegan_colored_mnist.yaml",
                                                                      "pix2pix_colored_mnist.yaml")]


class Repainter:
    """A stand-in translator: keeps the stroke and repaints it with the target palette's color of the digit,
    which it reads off the source color (perfect on palette-colored data); `perfect=False` keeps the colors."""

    def __init__(self, dm, perfect=True):
        self.dm, self.perfect = dm, perfect

    def translate(self, images, direction="AB"):
        if not self.perfect:
            return images
        source, target = (self.dm.palette_a, self.dm.palette_b) if direction == "AB" else (self.dm.palette_b,
                                                                                          self.dm.palette_a)
        digit = dominant_color(images, source)
        return images.amax(1, keepdim=True) * target[digit][:, :, None, None]


@pytest.mark.parametrize("paired", [True, False])
def test_metrics_of_a_perfect_and_of_a_color_keeping_translator(paired, mnist_dir, batches_of):
    dm = datamodule(paired, data_dir=mnist_dir)
    (batch, *_) = batches_of(dm, "test", "test")
    expected = {True: {"color_accuracy_ab": 1.0, "color_accuracy_ba": 1.0, "iou_ab": 1.0, "iou_ba": 1.0},
                False: {"color_accuracy_ab": 0.0, "color_accuracy_ba": 0.0, "iou_ab": 1.0, "iou_ba": 1.0}}
    for perfect, values in expected.items():
        metrics = TranslationMetrics()
        updated = metrics.update("test", Repainter(dm, perfect), batch, dm)
        assert set(updated) == set(METRICS)
        for name, value in values.items():
            assert updated[name].compute().item() == pytest.approx(value), (perfect, name)
        assert updated["cycle_l1_aba"].compute() < 1e-6 and updated["cycle_l1_bab"].compute() < 1e-6


class PairLookup:
    """The ground truth as a translator: the other domain's rendering of the same row of a paired batch."""

    def __init__(self, batch):
        self.a, self.b = batch["image_a"], batch["image_b"]

    def translate(self, images, direction="AB"):
        source, target = (self.a, self.b) if direction == "AB" else (self.b, self.a)
        assert torch.equal(images, source)
        return target


def test_ground_truth_pairs_score_perfectly(mnist_dir, batches_of):
    """Sanity check of the metrics: domain B's own rendering of a digit is a perfect A->B translation, also for
    antialiased strokes (every gray level from 0 to 1) painted in every palette color."""
    dm = datamodule(True, data_dir=mnist_dir)
    (batch, *_) = batches_of(dm, "test", "test")
    # 10 digits, each a stroke whose gray level ramps 0 -> 1 across its width, as on MNIST's antialiased edges
    gray = torch.zeros(10, 1, 28, 28)
    gray[:, :, 4:24, 6:22] = torch.linspace(0, 1, 16)
    labels = torch.arange(10)
    ramps = {"image_a": paint(gray, dm.palette_a, labels), "image_b": paint(gray, dm.palette_b, labels),
             "label": labels}
    for pairs in (batch, ramps):
        updated = TranslationMetrics().update("test", PairLookup(pairs), pairs, dm)
        for name in ("color_accuracy_ab", "color_accuracy_ba", "iou_ab", "iou_ba"):
            assert updated[name].compute().item() == 1.0, name


def test_color_accuracy_needs_a_domain_colored_by_digit(mnist_dir, batches_of):
    dm = datamodule(True, data_dir=mnist_dir, coloring_b="random")
    (batch, *_) = batches_of(dm, "test", "test")
    updated = TranslationMetrics().update("val", Repainter(dm), batch, dm)
    assert "color_accuracy_ab" not in updated and "color_accuracy_ba" in updated


def test_mask_iou():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.zeros(2, 3, 4, 4)
    a[0, 0, :2] = 1.0  # 8 foreground pixels
    b[0, 1, 1:3] = 0.9  # 8 pixels, 4 shared
    assert mask_iou(a, b).tolist() == pytest.approx([4 / 12, 1.0])  # the empty pair counts as identical


@pytest.mark.parametrize("paired", [True, False])
def test_pictures_show_one_strip_per_digit(paired, mnist_dir):
    dm = datamodule(paired, data_dir=mnist_dir)
    dm.setup("fit")
    rows = first_of_each_class(dm.split("train"), 10)
    for side in "ab":
        labels = rows.get(f"label_{side}", rows.get("label"))
        assert labels.tolist() == list(range(10))
    batch = dm.on_after_batch_transfer(rows, 0)
    pictures = strips(Repainter(dm), batch["image_a"], batch["image_b"])
    assert set(pictures) == {"a_to_b", "b_to_a"} and pictures["a_to_b"].shape == (10, 3, 28, 84)
    torch.testing.assert_close(pictures["a_to_b"][..., :28], batch["image_a"])


@pytest.mark.parametrize("config", TRANSLATION_CONFIGS, ids=lambda c: os.path.basename(c)[:-5])
def test_cli_test_reports_translation_metrics_and_fit_writes_pictures(config, mnist_dir, tmp_path):
    root = str(tmp_path / "runs")
    run_cli("fit", tiny_args(config, mnist_dir, root, "--trainer.max_steps", "2"))
    assert glob.glob(os.path.join(root, "*", "samples", "a_to_b_step_*.png"))
    assert glob.glob(os.path.join(root, "*", "samples", "b_to_a_step_*.png"))
    cli = run_cli("test", tiny_args(config, mnist_dir, root, "--ckpt_path", "last"))
    metrics = cli.trainer.callback_metrics
    assert {f"test/{name}" for name in METRICS} <= set(metrics)
    by_hand = TranslationMetrics()  # every test image through the tested weights, outside Lightning's loop
    dm, model = cli.datamodule, cli.model.eval()
    for batch in dm.test_dataloader():
        by_hand.update("test", model, dm.on_after_batch_transfer(batch, 0), dm)
    for name in METRICS:
        assert float(metrics[f"test/{name}"]) == pytest.approx(float(by_hand.means[f"test_{name}"].compute())), name
    assert float(metrics["test/cycle_l1_aba"]) > 0.01  # 2 steps of training: far from a perfect round trip
