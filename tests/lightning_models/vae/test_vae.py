"""The VAE scheme: sampling and encode/decode contracts, loss terms, color statistics and color sampling, the test
metrics, pictures, and a checkpoint round trip."""

import copy
import math

import pytest
import pytorch_lightning as pl
import torch

from datamodules import ColoredMNISTDataModule, MNISTDataModule
from datamodules.colored_mnist import DEFAULT_PALETTE, paint
from lightning_models import VAE
from lightning_models.vae import latent_plots as plots
from lightning_models.vae.color_latents import ColorLatents

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LATENTS = {"continuous": dict(continuous_dim=3), "discrete": dict(continuous_dim=0, categorical_dims=[4, 3]),
           "joint": dict(continuous_dim=2, categorical_dims=[5])}


def tiny_vae(latent="joint", **kwargs):
    return VAE(**{**LATENTS[latent], "mlp_hidden": [16, 8], "conv_width": 4, "num_eval_samples": 20, **kwargs})


def fit(model, data_dir, max_steps=3, logger=False, **trainer_kwargs):
    dm = ColoredMNISTDataModule(data_dir=data_dir, batch_size=8, val_size=8)
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=logger, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, **trainer_kwargs)
    trainer.fit(model, dm)
    return trainer, dm


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("latent", list(LATENTS))
def test_sample_contract(latent, architecture):
    model = tiny_vae(latent, architecture=architecture)
    model.train()
    for labels in (None, torch.tensor([0, 9, 3, 3, 5])):
        images = model.sample(5, labels)
        assert images.shape == (5, 3, 28, 28) and images.device == model.device
        assert images.min() >= 0 and images.max() <= 1 and not images.requires_grad
    assert model.training  # restored
    g1, g2 = (torch.Generator().manual_seed(3) for _ in range(2))
    assert torch.equal(model.sample(4, torch.arange(4), g1), model.sample(4, torch.arange(4), g2))
    assert model.sample(0, torch.zeros(0, dtype=torch.long)).shape == (0, 3, 28, 28)


def test_labels_are_color_ids_and_are_checked():
    model = tiny_vae(num_classes=10, num_colors=4)
    assert model.conditional and model.num_classes == 4 and model.num_digits == 10
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\]"):
        model.sample(2, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="3 integer class ids"):
        model.sample(3, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        tiny_vae(num_colors=0).sample(2, torch.tensor([0, 1]))


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_encode_decode_contract(architecture):
    model = tiny_vae("joint", architecture=architecture)  # code: 2 continuous + 5 one-hot
    images = torch.rand(6, 3, 28, 28)
    codes = model.encode(images)
    assert codes.shape == (6, model.latent_size) == (6, 7)
    assert torch.equal(codes[:, 2:].sum(1), torch.ones(6)) and set(codes[:, 2:].unique().tolist()) == {0.0, 1.0}
    decoded = model.decode(codes)
    assert decoded.shape == (6, 3, 28, 28) and decoded.min() >= 0 and decoded.max() <= 1
    with pytest.raises(ValueError, match=r"images in \[0, 1\]"):
        model.encode(images * 2 - 1)
    with pytest.raises(ValueError, match=r"shape \(B, 3, 28, 28\)"):
        model.encode(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 7\) = continuous_dim 2 \+ categorical_dims \[5\]"):
        model.decode(torch.zeros(2, 6))


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="latent is empty"):
        tiny_vae(continuous_dim=0, categorical_dims=[])
    with pytest.raises(ValueError, match="categorical_dims"):
        tiny_vae(categorical_dims=[1])
    with pytest.raises(ValueError, match="--model.norm 'spectral' is not available for --model.architecture mlp"):
        tiny_vae(norm="spectral")
    with pytest.raises(ValueError, match="--model.architecture"):
        tiny_vae(architecture="transformer")
    with pytest.raises(ValueError, match="color_temperature"):
        tiny_vae(color_temperature=0.0)
    with pytest.raises(ValueError, match="color_bank must be >= 0"):
        tiny_vae(color_bank=-1)
    with pytest.raises(ValueError, match="consistency_weight must be >= 0"):
        tiny_vae(consistency_weight=-1.0)
    with pytest.raises(ValueError, match="consistency_warp"):
        tiny_vae(consistency_warp=(10.0, 1.0, 0.1))
    with pytest.raises(ValueError, match=r"needs a categorical variable \(--model.categorical_dims\)"):
        tiny_vae("continuous", consistency_weight=1.0)


def test_loss_terms_and_capacity_penalty():
    model = tiny_vae("joint")
    images = torch.rand(4, 3, 28, 28)
    terms, mean, logits = model.loss_terms(images, torch.Generator().manual_seed(0), temperature=0.5)
    assert {k: v.shape for k, v in terms.items()} == {k: (4,) for k in ("reconstruction", "kl_continuous",
                                                                         "kl_categorical")}
    assert (terms["reconstruction"] > 0).all() and mean.shape == (4, 2) and [x.shape for x in logits] == [(4, 5)]
    kl_c, kl_d = torch.tensor(2.0), torch.tensor(0.5)
    assert model.kl_penalty(kl_c, kl_d, step=7).item() == pytest.approx(2.5)  # beta = 1: the ELBO's KL
    capped = tiny_vae("joint", capacity_continuous=4.0, capacity_categorical=100.0, capacity_steps=10,
                      capacity_gamma=30.0)
    assert capped.kl_penalty(kl_c, kl_d, step=0).item() == pytest.approx(30 * 2.0 + 30 * 0.5)  # capacities 0
    assert capped.kl_penalty(kl_c, kl_d, step=5).item() == pytest.approx(30 * 0.0 + 30 * abs(0.5 - math.log(5) / 2))
    # the categorical capacity is capped at log 5, the most 5 categories can carry
    assert capped.kl_penalty(kl_c, kl_d, step=99).item() == pytest.approx(30 * 2.0 + 30 * (math.log(5) - 0.5))


def test_color_latents_recover_statistics_and_sample_inside_each_region():
    colors = ColorLatents(num_colors=3, continuous_dim=2, categorical_dims=[3])
    gen = torch.Generator().manual_seed(0)
    centers = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]])  # overlapping regions
    ids = torch.arange(3000) % 3
    means = centers[ids] + torch.randn(3000, 2, generator=gen) * torch.tensor([1.0, 0.5])
    probs = torch.nn.functional.one_hot(ids, 3).float() * 0.4 + 0.6 / 3  # each color prefers its own category
    colors.update(means, probs, ids)
    mean, vectors, values, cat_probs = colors.distributions()
    torch.testing.assert_close(mean, centers, atol=0.1, rtol=0)  # 1000 draws per color: within ~3 std errors
    cov = vectors @ torch.diag_embed(values) @ vectors.mT
    torch.testing.assert_close(cov, torch.diag(torch.tensor([1.0, 0.25])).expand(3, 2, 2), atol=0.1, rtol=0)
    torch.testing.assert_close(cat_probs, probs[:3], atol=1e-5, rtol=0)
    wanted = torch.arange(300) % 3
    codes = colors.sample(wanted, torch.Generator().manual_seed(1), candidates=16)
    assert (colors.log_likelihood(codes).argmax(1) == wanted).all()  # every code in its color's region
    plain = colors.sample(wanted, torch.Generator().manual_seed(1), candidates=1)
    assert (colors.log_likelihood(plain).argmax(1) != wanted).any()  # without selection, some are not
    cold = colors.sample(wanted, torch.Generator().manual_seed(2), temperature=1e-6)
    torch.testing.assert_close(cold[:, :2], mean[wanted], atol=0.02, rtol=0)  # T -> 0: the color's mean
    assert torch.equal(cold[:, 2:].argmax(1), wanted)  # ... and its most likely category
    colors.update(means, probs, ids, decay=0.0)  # decay 0 forgets everything but the new batch
    assert colors.count.tolist() == [1000.0, 1000.0, 1000.0]


def test_color_bank_keeps_the_last_means_of_each_color():
    colors = ColorLatents(num_colors=2, continuous_dim=1, categorical_dims=[], bank_size=3)
    colors.update(torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]]), torch.zeros(5, 0), torch.tensor([0, 0, 1, 0, 0]))
    assert sorted(colors.bank[0, :, 0].tolist()) == [2.0, 4.0, 5.0] and colors.bank[1, 0, 0] == 3.0
    colors.update(torch.tensor([[6.0]]), torch.zeros(1, 0), torch.tensor([0]))  # replaces the oldest, 2
    assert sorted(colors.bank[0, :, 0].tolist()) == [4.0, 5.0, 6.0] and colors.bank_added.tolist() == [5, 1]
    assert not hasattr(ColorLatents(2, 0, [3], bank_size=3), "bank")  # no continuous part, nothing to keep
    with pytest.raises(ValueError, match="bank size must be >= 0"):
        ColorLatents(2, 1, [], bank_size=-1)


def test_color_bank_samples_follow_a_color_with_two_clusters():
    # each color's codes form two clusters (at -5 and 5, + 20 for color 1): one Gaussian per color puts much of its
    # mass between them, the kernel density estimate of the stored means (kernel std ~1.7 here) little
    gen = torch.Generator().manual_seed(0)
    ids = torch.arange(2000) % 2
    sign = torch.where(torch.rand(2000, generator=gen) < 0.5, -5.0, 5.0)
    means = (sign + 20.0 * ids + 0.3 * torch.randn(2000, generator=gen))[:, None]
    gaussian, kde = ColorLatents(2, 1, []), ColorLatents(2, 1, [], bank_size=200)
    for model in (gaussian, kde):
        model.update(means, torch.zeros(2000, 0), ids)
    wanted = torch.arange(1000) % 2
    between = {}
    for name, model in (("gaussian", gaussian), ("kde", kde)):
        codes = model.sample(wanted, torch.Generator().manual_seed(1), candidates=1)[:, 0] - 20.0 * wanted
        between[name] = (codes.abs() < 1.5).float().mean().item()
        assert abs(codes.mean().item()) < 0.5  # both are centred on the color's codes
    assert between["gaussian"] > 0.15 and between["kde"] < 0.06
    cold = kde.sample(wanted, torch.Generator().manual_seed(2), candidates=1, temperature=1e-8)
    stored = kde.bank[wanted, :, 0]  # T -> 0: the codes are stored means
    assert ((cold - stored).abs().amin(1) < 1e-3).all()


def test_unseen_colors_fall_back_to_the_prior():
    colors = ColorLatents(num_colors=2, continuous_dim=2, categorical_dims=[4])
    mean, vectors, values, probs = colors.distributions()
    assert mean.abs().max() == 0 and torch.allclose(values, torch.ones(2, 2))
    torch.testing.assert_close(probs, torch.full((2, 4), 0.25))


def test_training_updates_color_statistics_and_anneals_temperature(mnist_dir):
    model = tiny_vae("joint", temperature=1.0, temperature_min=0.5, temperature_anneal_steps=4)
    trainer, _ = fit(model, mnist_dir, max_steps=3)
    assert trainer.global_step == 3  # one optimizer step per batch
    assert model.color_latents.count.sum() > 0 and model.color_latents.mean_sum.abs().sum() > 0
    assert model.current_temperature() == pytest.approx(0.5 ** 0.75)
    # logged as the mean over the run's one logging interval, steps 0-2
    assert float(trainer.callback_metrics["train/temperature"]) == pytest.approx(sum(0.5 ** (s / 4) for s in range(3)) / 3)


def test_num_colors_must_match_the_data(mnist_dir):
    palette = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    dm = ColoredMNISTDataModule(data_dir=mnist_dir, batch_size=8, val_size=8, palette=palette)
    with pytest.raises(ValueError, match="pass --model.num_colors 3"):
        trainer.fit(tiny_vae(), dm)
    with pytest.raises(ValueError, match="--model.num_colors 0"):
        trainer.fit(tiny_vae(), MNISTDataModule(data_dir=mnist_dir, batch_size=8, val_size=8))


@pytest.mark.parametrize("color_bank", [0, 16])
def test_checkpoint_round_trip_keeps_samples_and_color_statistics(mnist_dir, tmp_path, color_bank):
    model = tiny_vae("joint", architecture="conv", color_bank=color_bank)
    trainer, _ = fit(model, mnist_dir, max_steps=3)
    path = str(tmp_path / "vae.ckpt")
    trainer.save_checkpoint(path)
    loaded = VAE.load_from_checkpoint(path)  # no extra arguments
    for name, buffer in model.color_latents.named_buffers():
        assert buffer.abs().sum() > 0 and torch.equal(buffer, dict(loaded.color_latents.named_buffers())[name])
    for labels in (None, torch.arange(6) % 10):
        a = model.sample(6, labels, generator=torch.Generator().manual_seed(0))
        b = loaded.sample(6, labels, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(a, b)


def test_test_metrics(mnist_dir):
    model = tiny_vae("joint")
    trainer, dm = fit(model, mnist_dir, max_steps=2)
    metrics = trainer.test(model, dm, verbose=False)[0]
    assert metrics["test/neg_elbo"] == pytest.approx(metrics["test/reconstruction"] + metrics["test/kl_continuous"]
                                                     + metrics["test/kl_categorical"], rel=1e-4)
    # by hand, from the posterior of every test image (the definitions in vae/evaluation.py's doc)
    batches = [dm.on_after_batch_transfer(batch, 0) for batch in dm.test_dataloader()]
    images, digits = torch.cat([b["image"] for b in batches]), torch.cat([b["label"] for b in batches])
    model.eval()
    with torch.no_grad():
        mean, _, (logits,) = model.posterior(images)
    assert metrics["test/active_units"] == int((mean.var(0, unbiased=False) > 0.01).sum())
    assert metrics["test/active_categorical"] == float(logits.softmax(1).var(0, unbiased=False).sum() > 0.01)
    confusion = torch.zeros(5, 10).index_put_((logits.argmax(1), digits), torch.ones(len(digits)), accumulate=True)
    assert metrics["test/cluster_accuracy"] == pytest.approx(float(confusion.amax(1).sum() / len(digits)))
    expected_color = model.color_scores(dm.palette, model.hparams.num_eval_samples, dm.eval_batch_size)
    for name, value in expected_color.items():
        assert metrics[f"test/{name}"] == pytest.approx(value), name


def test_active_units_and_cluster_accuracy_follow_their_definitions(mnist_dir):
    model = tiny_vae("joint")
    trainer, dm = fit(model, mnist_dir, max_steps=1)
    current = {}
    test_step = model.test_step

    def remember_labels(batch, batch_idx):
        current["label"] = batch["label"]
        return test_step(batch, batch_idx)

    def posterior(images):  # dim 0 varies with the digit, dim 1 is constant; category = digit % 5
        labels = current["label"].float()
        mean = torch.stack([labels, torch.full_like(labels, 0.3)], 1)
        return mean, torch.zeros_like(mean), [torch.nn.functional.one_hot(current["label"] % 5, 5).float() * 50], None

    model.test_step, model.posterior_and_color = remember_labels, posterior
    metrics = trainer.test(model, dm, verbose=False)[0]
    assert metrics["test/active_units"] == 1
    # the 32 test digits are 0-9 balanced (0 and 1 four times, the others three): category k holds digits k and
    # k + 5, and its majority digit is right for 4 + 4 + 3 + 3 + 3 = 17 of them
    assert metrics["test/cluster_accuracy"] == pytest.approx(17 / 32)
    # one-to-one: category k gets one digit (k or k + 5), its other digit counts as wrong: here the same 17
    assert metrics["test/cluster_accuracy_one_to_one"] == pytest.approx(17 / 32)


def test_color_accuracy_measures_the_dominant_color():
    model = tiny_vae("continuous")
    palette = torch.tensor(DEFAULT_PALETTE)
    digit = torch.zeros(1, 1, 28, 28)
    digit[..., 8:20, 12:16] = 1.0

    def painted(shift):
        return lambda n, labels, generator=None: paint(digit.expand(n, -1, -1, -1), palette, (labels + shift) % 10)

    model.sample = painted(0)
    assert model.color_accuracy(palette, 30, batch_size=7) == 1.0
    assert model.color_scores(palette, 30, batch_size=7) == {"color_accuracy": 1.0, "color_accuracy_strict": 1.0,
                                                             "color_mixed": 0.0}
    model.sample = painted(1)
    assert model.color_accuracy(palette, 30) == 0.0

    def two_colors(n, labels, generator=None):  # the top half in the requested color, the bottom half in the next
        top, bottom = painted(0)(n, labels), painted(1)(n, labels)
        return torch.cat([top[..., :14, :], bottom[..., 14:, :]], dim=2)

    model.sample = two_colors  # the digit's 12 rows split 6 / 6: no color has the majority of the stroke
    scores = model.color_scores(palette, 30, batch_size=7)
    assert scores["color_accuracy_strict"] == 0.0 and scores["color_mixed"] == 1.0


def test_pictures_and_scatter_plot():
    model = tiny_vae("joint")
    images = torch.rand(10, 3, 28, 28)
    pictures = model.pictures(images, torch.arange(10))
    assert set(pictures) == {"reconstructions", "scatter_color", "scatter_digit", "traversal", "categorical_0"}
    assert all(p.dim() == 3 and p.shape[0] == 3 and 0 <= p.min() and p.max() <= 1 for p in pictures.values())
    assert pictures["traversal"].shape[1] == 2 * 28 + 3 * 2  # one row per continuous dim
    assert pictures["categorical_0"].shape[1] == 5 * 28 + 6 * 2  # one row per category
    # size 32: 1-pixel lines; y axis in column 2, x axis in row 29, ticks outside them, plot area columns 4..31
    # and rows 0..27, points 1 pixel (the marker) inside it
    canvas = plots.scatter_image(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]),
                                 size=32, marker=1)
    assert canvas[:, 26, 5].tolist() == [1.0, 0.0, 0.0]  # bottom left, red
    assert canvas[:, 1, 30].tolist() == [0.0, 0.0, 1.0]  # top right, blue
    axis = plots.AXIS_COLOR
    assert (canvas[:, :30, 2] == axis).all() and (canvas[:, 29, 2:] == axis).all()  # the axis lines
    assert (canvas[:, 30:, 5] == axis).all() and (canvas[:, 30:, 30] == axis).all()  # ticks at x = 0 and 1 ...
    assert (canvas[:, 26, :2] == axis).all() and (canvas[:, 1, :2] == axis).all()  # ... and y = 0 and 1
    assert not (canvas[:, :, 20:] == torch.tensor(plots.TEXT_COLOR)).all(0).any()  # own colors: no legend


def test_scatter_plot_legend_of_label_colors():
    labels = torch.tensor([0, 3, 3, 7])
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    canvas = plots.scatter_image(points, plots.label_colors(labels))  # 256: 2-pixel lines, a 24-pixel legend
    assert canvas.shape == (3, 256, 256)
    for row, k in enumerate([0, 3, 7]):  # one legend row (14 pixels) per class present: its color, its digit
        top = 2 + 14 * row
        assert (canvas[:, top : top + 10, 236:246] == plots.LABEL_COLORS[k][:, None, None]).all()
        digit = canvas[0, top : top + 10, 248:254] == plots.TEXT_COLOR
        glyph = torch.tensor([int(b) for b in plots.DIGIT_GLYPHS[str(k)]], dtype=torch.bool).view(5, 3)
        assert torch.equal(digit, glyph.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert (canvas[:, 2 + 14 * 3 :, 232:] == 0.1).all()  # no more rows; points and axes stay left of the legend
    assert plots.legend_classes(torch.tensor([[0.3, 0.3, 0.3], [0.12, 0.47, 0.71]])) == []  # not all label colors
    empty = plots.scatter_image(torch.zeros(0, 2), torch.zeros(0, 3), size=64)
    assert empty.shape == (3, 64, 64) and (empty == plots.AXIS_COLOR).any()  # axes without points
    torch.testing.assert_close(plots.project_2d(torch.tensor([[1.0], [2.0]])), torch.tensor([[1.0, 0.0], [2.0, 0.0]]))


def test_validation_logs_pictures(mnist_dir, monkeypatch):
    logged = []
    monkeypatch.setattr("lightning_models.vae.evaluation.log_images", lambda trainer, key, grid, step: logged.append(key))
    model = tiny_vae("discrete")
    fit(model, mnist_dir, max_steps=7, logger=pl.loggers.CSVLogger(mnist_dir), num_sanity_val_steps=0)  # 1 epoch
    assert sorted(logged) == ["samples/categorical_0", "samples/categorical_1", "samples/reconstructions",
                              "samples/scatter_color", "samples/scatter_digit"]


def test_classifier_scores_of_prior_samples(mnist_dir, tmp_path):
    # with a digit classifier, `test` adds the GANs' scores for prior samples: unconditional (the VAE's labels are
    # colors, not digits), colored images scored by their stroke; equal to SampleEvaluator fed by hand
    from lightning_models.metrics.classifier import Classifier
    from lightning_models.metrics.evaluation import SampleEvaluator, sample_in_chunks

    digits = MNISTDataModule(data_dir=mnist_dir, batch_size=16, val_size=8)
    classifier = Classifier(image_shape=(1, 28, 28), num_classes=10, width=4)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0)
    trainer.fit(classifier, digits)
    path = str(tmp_path / "classifier.ckpt")
    trainer.save_checkpoint(path)

    model = tiny_vae("joint", classifier_path=path)
    trainer, dm = fit(model, mnist_dir, max_steps=2)
    metrics = trainer.test(model, dm, verbose=False)[0]
    assert "test/conditional_accuracy" not in metrics and "test/class_fid_classifier_mean" not in metrics
    assert {"test/color_accuracy", "test/neg_elbo"} <= set(metrics)

    evaluator = SampleEvaluator(path, 10, conditional=False)
    for batch in dm.test_dataloader():
        evaluator.update_real(dm.on_after_batch_transfer(batch, 0)["image"])
    model.eval()
    rng = torch.Generator().manual_seed(12345)
    for images, _ in sample_in_chunks(lambda k, y: model.sample(k, y, generator=rng), model.hparams.num_eval_samples,
                                      dm.eval_batch_size, 10, False, "cpu"):
        assert images.shape[1] == 3
        evaluator.update_fake(images)
    expected = evaluator.compute()
    for name in ("fid_classifier", "precision_classifier", "recall_classifier", "diversity_classifier",
                 "class_coverage"):
        assert metrics[f"test/{name}"] == pytest.approx(float(expected[name]), rel=1e-4, abs=1e-6), name


def four_strokes_in_random_palette_colors(n=400, seed=0):
    """n colored images of 4 strokes (image i has stroke i % 4: a bar at rows 4(i % 4) .. +3) in random palette
    colors, and their stroke ids."""
    rng = torch.Generator().manual_seed(seed)
    strokes = torch.arange(n) % 4
    gray = torch.zeros(n, 1, 28, 28)
    for k in range(4):
        gray[strokes == k, :, 4 * k + 6 : 4 * k + 9, 6:22] = 1.0
    colors = torch.tensor(DEFAULT_PALETTE)[torch.randint(len(DEFAULT_PALETTE), (n,), generator=rng)]
    return gray * colors[:, :, None, None], strokes


def test_consistency_term_rewards_categories_that_ignore_color():
    """IIC between each image and its recolored copy: -log K for categories that follow the shape, about 0 for
    categories that follow the color (the copy's color is new), unless the copies keep their color."""
    images, strokes = four_strokes_in_random_palette_colors()
    by_shape = lambda x: torch.nn.functional.one_hot((x.amax(1)[:, :, 12].argmax(1) - 6) // 4, 4).float() * 50  # noqa: E731
    by_color = lambda x: torch.nn.functional.one_hot(x.flatten(2).amax(2).argmax(1), 4).float() * 50  # noqa: E731
    assert torch.equal(by_shape(images).argmax(1), strokes)
    for recolor, expected_color in ((True, 0.0), (False, None)):
        model = tiny_vae("joint", categorical_dims=[4], consistency_weight=1.0, consistency_warp=(0.0, 0.0, 0.0),
                         consistency_recolor=recolor)
        for categories, expected in ((by_shape, -math.log(4)), (by_color, expected_color)):
            model.encoder_heads = lambda x: (None, None, [categories(x)], None, None)
            loss = model.consistency_loss(images, categories(images)).item()
            if expected is None:  # copies in their own colors: the color categories agree with themselves
                joint = torch.bincount(categories(images).argmax(1), minlength=4).float() / len(images)
                expected = float((joint * joint.clamp_min(1e-8).log()).sum())  # -H(c) = -I(c; c)
            assert loss == pytest.approx(expected, abs=0.02)


def test_consistency_term_trains_and_is_logged(mnist_dir):
    model = tiny_vae("joint", consistency_weight=1.0)
    trainer, _ = fit(model, mnist_dir, max_steps=2)
    consistency = float(trainer.callback_metrics["train/consistency"])
    assert -math.log(5) <= consistency <= 0.0 and consistency < -1e-4  # the MI of two views is in [0, log K]


def test_overclustering_head_is_trained_by_the_consistency_term_and_stays_out_of_the_code():
    for bad in (-1, 1):
        with pytest.raises(ValueError, match="consistency_overcluster must be 0 .* or >= 2"):
            tiny_vae("joint", consistency_weight=1.0, consistency_overcluster=bad)
    with pytest.raises(ValueError, match="needs --model.consistency_weight > 0"):
        tiny_vae("joint", consistency_overcluster=7)
    plain = tiny_vae("joint", consistency_weight=1.0)
    model = tiny_vae("joint", consistency_weight=1.0, consistency_overcluster=7)
    assert model.latent_size == plain.latent_size and model.encode(torch.rand(2, 3, 28, 28)).shape == (2, 7)
    images = torch.rand(6, 3, 28, 28)
    heads = model.encoder_heads(images)
    assert heads[4].shape == (6, 7) and plain.encoder_heads(images)[4] is None
    # the term is the first variable's IIC loss plus the head's: with the head's categories the same for each image
    # and its copy (pinned), the head adds -I(c; c) = -H(c)
    stroke = torch.arange(6) % 7
    pinned = torch.nn.functional.one_hot(stroke, 7).float() * 50
    main = torch.nn.functional.one_hot(torch.arange(6) % 5, 5).float() * 50
    model.encoder_heads = lambda x: (None, None, [main], None, pinned)
    with_head = model.consistency_loss(images, main, pinned).item()
    without = model.consistency_loss(images, main).item()
    joint = torch.bincount(stroke, minlength=7).float() / 6
    assert with_head - without == pytest.approx(float((joint * joint.clamp_min(1e-8).log()).sum()), abs=1e-3)
    assert model.hparams.consistency_overcluster == 7  # saved with the model: checkpoints rebuild the head


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_consistency_copies_leave_the_running_statistics_alone(architecture):
    """The warped, recolored copies pass the encoder's batch norm with their own batch statistics, but the running
    statistics (what evaluation normalises with) move as for the images alone."""
    images = torch.rand(8, 3, 28, 28)
    model = tiny_vae("joint", architecture=architecture, norm="batch", consistency_weight=1.0,
                     consistency_overcluster=3 if architecture == "conv" else 0)  # (the head's copies too)
    model.log_train = lambda *args, **kwargs: None
    reference = copy.deepcopy(model.encoder)
    reference(images)  # one pass of the images alone, in train mode
    batch = {"image": images, "label": torch.zeros(8, dtype=torch.long), "color": torch.arange(8)}
    seen = []
    hook = model.encoder.register_forward_hook(lambda module, args, out: seen.append(out))
    model.training_step(batch, 0)
    hook.remove()
    assert len(seen) == 2  # the images, then the copies
    stats = {k: v for k, v in model.encoder.state_dict().items() if "running" in k or "num_batches" in k}
    assert stats
    for key, value in stats.items():
        assert torch.equal(value, reference.state_dict()[key]), key
    norms = [m for m in model.encoder.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    assert norms and all(m.momentum == 0.1 for m in norms)  # given back


def test_color_decoder_puts_the_color_in_the_code_and_samples_the_requested_block():
    with pytest.raises(ValueError, match="color_decoder true .* needs --model.num_colors > 0"):
        tiny_vae(color_decoder=True, num_colors=0)
    model = tiny_vae("joint", color_decoder=True).eval()  # code: 2 continuous + 5 categories + 10 colors
    assert model.latent_size == 2 + 5 + 10
    images = torch.rand(6, 3, 28, 28)
    codes = model.encode(images)
    assert codes.shape == (6, 17) and torch.equal(codes[:, 7:].sum(1), torch.ones(6))  # one color each
    seen = {}
    model.decoder.register_forward_pre_hook(lambda module, args: seen.__setitem__("codes", args[0]))
    colors = torch.tensor([3, 0, 9, 3])
    model.sample(4, colors, generator=torch.Generator().manual_seed(0))
    assert torch.equal(seen["codes"][:, 7:].argmax(1), colors) and torch.equal(seen["codes"][:, 7:].sum(1), torch.ones(4))
    # the loss: the decoder gets the true colors, the color head is trained on them
    seen.clear()
    terms, _, _ = model.loss_terms(images, torch.Generator().manual_seed(0), None, colors=torch.arange(6))
    assert torch.equal(seen["codes"][:, 7:].argmax(1), torch.arange(6))
    assert terms["color_classification"].shape == (6,) and (terms["color_classification"] > 0).all()
    # the color is given, so no per-color posterior statistics are kept; a checkpoint that still has them loads
    assert model.color_latents is None and not any(k.startswith("color_latents") for k in model.state_dict())
    older = {"state_dict": {**model.state_dict(), "color_latents.count": torch.zeros(10)}}
    model.on_load_checkpoint(older)
    model.load_state_dict(older["state_dict"])


def test_color_decoder_trains_its_color_head(mnist_dir):
    """The training step's loss includes the color head's cross-entropy: optimising it on one batch teaches the
    head the batch's colors; a short fit logs the term and `test` reports it beside the bound."""
    model = tiny_vae("joint", color_decoder=True, mlp_hidden=[64, 32])
    dm = ColoredMNISTDataModule(data_dir=mnist_dir, batch_size=8, val_size=8)
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    model.log_train = lambda *args, **kwargs: None
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def color_loss():
        return model.loss_terms(batch["image"], None, 0.5, batch["color"])[0]["color_classification"].mean().item()

    before = color_loss()
    for _ in range(60):
        optimizer.zero_grad()
        model.training_step(batch, 0).backward()
        optimizer.step()
    assert before > 0.8 * math.log(10) and color_loss() < 0.5 * before
    trainer, dm = fit(tiny_vae("joint", color_decoder=True), mnist_dir, max_steps=2)
    assert math.isfinite(float(trainer.callback_metrics["train/color_classification"]))
    metrics = trainer.test(trainer.lightning_module, dm, verbose=False)[0]
    assert {"test/neg_elbo", "test/color_accuracy", "test/color_classification"} <= set(metrics)
