"""InfoGAN: the Q head on the discriminator body, the information loss and its gradients, info_weight 0 as the
plain GAN, the code API, traversal grids, code/class accuracy metrics and the offline Inception path."""

import glob
import logging
import os
import urllib.error
import warnings

import pytest
import torch
import torch.nn as nn

from lightning_models import GAN, InfoGAN
from lightning_models.gan.infogan_evaluation import code_traversal
from lightning_models.metrics.clustering import cluster_accuracy, cluster_table, greedy_assignment
import lightning_models.metrics.inception as inception_metrics
from tests.helpers import REPO, last_checkpoint, run_cli, tiny_args
from tests.lightning_models.gan.test_gan import fit

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tiny_infogan(**kwargs):
    args = dict(image_shape=(1, 28, 28), num_classes=10, latent_dim=4, generator_width=8, discriminator_width=8,
                q_hidden=8, categorical_codes=(3, 4), continuous_codes=2, inception_metrics=False)
    torch.manual_seed(0)
    return InfoGAN(**{**args, **kwargs})


@pytest.mark.parametrize("fc_width", [0, 16])
def test_q_head_shares_the_discriminator_body_in_one_pass(fc_width):
    model = tiny_infogan(fc_width=fc_width)
    d = model.discriminator
    q_params = {id(p) for p in d.q_head.parameters()}
    _, opt_d = model.configure_optimizers()
    assert q_params <= {id(p) for group in opt_d.param_groups for p in group["params"]}  # D's optimizer trains Q
    calls = []
    d.body.register_forward_hook(lambda *args: calls.append(1))
    if fc_width:
        d.fc.register_forward_hook(lambda *args: calls.append(2))
    x = torch.randn(5, 1, 28, 28)
    model.eval()  # spectral norm's power iteration would move the weights between the two passes compared
    logits, (code_logits, mean, log_std) = model.discriminate(x, None)
    assert calls == ([1, 2] if fc_width else [1])  # one body (and fc) pass for both heads
    torch.testing.assert_close(logits, d(x))
    assert [t.shape for t in code_logits] == [(5, 3), (5, 4)] and mean.shape == log_std.shape == (5, 2)


def test_fc_width_builds_infogans_mnist_networks():
    """fc_width 1024 at width 64 is the paper's MNIST architecture: G = FC 1024 - FC 7x7x128 - upconv 64 -
    upconv 1, D = conv 64 - conv 128 - FC 1024 shared by the D and Q heads; 0 leaves the DCGAN networks (and so
    the checkpoint keys of earlier runs) as they were."""
    model = tiny_infogan(generator_width=64, discriminator_width=64, discriminator_norm="batch", fc_width=1024,
                         categorical_codes=(10,), latent_dim=62)
    g, d = model.generator, model.discriminator
    linears = {(m.in_features, m.out_features) for m in g.modules() if isinstance(m, nn.Linear)}
    assert linears == {(10 + 2 + 62, 1024), (1024, 128 * 7 * 7)}
    assert isinstance(g.fc[2], nn.BatchNorm1d) and isinstance(d.fc[2], nn.BatchNorm1d)
    assert (d.fc[1].in_features, d.fc[1].out_features) == (128 * 7 * 7, 1024)
    assert d.head.in_features == 1024 and d.q_head.net[1].in_features == 1024
    assert g(model.draw_latent(3, None)).shape == (3, 1, 28, 28)
    # the information term trains the shared fc layer; the real/fake head stays out of it
    latent = model.draw_latent(4, torch.Generator().manual_seed(0))
    model.auxiliary_loss(model.discriminate(g(latent), None)[1], latent, None).backward()
    assert d.fc[1].weight.grad.abs().sum() > 0 and d.head.weight.grad is None
    plain = tiny_infogan()
    assert plain.generator.fc is None and plain.discriminator.fc is None
    assert not any(".fc." in key for key in plain.state_dict())
    with pytest.raises(ValueError, match="fc_width"):
        tiny_infogan(fc_width=-1)
    with pytest.raises(ValueError, match="fc_width and --model.minibatch_std"):
        tiny_infogan(fc_width=8, minibatch_std=True)


def test_information_loss_math():
    model = tiny_infogan(continuous_std=0.5, continuous_weight=0.3)
    categories = torch.tensor([[0, 3], [2, 1]])
    continuous = torch.tensor([[0.5, -1.0], [0.0, 0.25]])
    latent = model.make_latent(categories, continuous, torch.zeros(2, 4))
    logits = [torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), torch.tensor([[0.0, 0, 0, 1], [0.0, 3, 0, 0]])]
    mean = torch.tensor([[0.0, -1.0], [1.0, 0.25]])
    loss = model.information_loss((logits, mean, None), latent)
    ce = sum(nn.functional.cross_entropy(lg, categories[:, i]) for i, lg in enumerate(logits))
    z = (continuous - mean) / 0.5
    nll = (0.5 * z**2 + torch.log(torch.tensor(0.5))).sum(1).mean()
    torch.testing.assert_close(loss, ce + 0.3 * nll)
    # learned std: the Gaussian NLL uses Q's log-std
    log_std = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    learned = tiny_infogan(continuous_weight=1.0).information_loss((logits, mean, log_std), latent)
    z = (continuous - mean) * torch.exp(-log_std)
    torch.testing.assert_close(learned, ce + (0.5 * z**2 + log_std).sum(1).mean())


def test_information_loss_reaches_generator_and_q_head():
    model = tiny_infogan()
    latent = model.draw_latent(6, torch.Generator().manual_seed(0))
    fake = model.generator(latent)
    _, aux = model.discriminate(fake, None)
    model.auxiliary_loss(aux, latent, None).backward()
    for name, net in (("generator", model.generator), ("q_head", model.discriminator.q_head),
                      ("body", model.discriminator.body)):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters()), name
    assert all(p.grad is None for p in model.discriminator.head.parameters())  # the real/fake head is not in it


@pytest.mark.parametrize("fc_width", [0, 16])
def test_info_trains_body_false_keeps_the_term_out_of_the_body_in_the_discriminator_step(fc_width):
    """With info_trains_body false, the information term of the discriminator step (D trainable) reaches the Q
    head only; in the generator step (D frozen by toggled_optimizer) it still reaches the generator through the
    body. The default (the paper) trains the body in the discriminator step too."""
    for trains_body in (True, False):
        model = tiny_infogan(info_trains_body=trains_body, fc_width=fc_width)
        latent = model.draw_latent(6, torch.Generator().manual_seed(0))
        fake = model.generator(latent)
        model.auxiliary_loss(model.discriminate(fake.detach(), None)[1], latent, None).backward()  # D step
        d = model.discriminator
        shared = [*d.body.parameters(), *(d.fc.parameters() if d.fc is not None else [])]
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.q_head.parameters())
        assert any(p.grad is not None for p in shared) == trains_body
        d.zero_grad(set_to_none=True)
        d.requires_grad_(False)  # the generator step
        model.auxiliary_loss(model.discriminate(fake, None)[1], latent, None).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters()
                   if p.dim() > 1)


def test_info_trains_body_false_detaches_exactly_in_the_discriminator_steps_of_training(mnist_dir):
    """Under Trainer.fit the discriminator step (real and fake passes) gets Q on detached features and the
    generator step does not: the step is told apart by toggled_optimizer's freezing of D."""
    model = tiny_infogan(info_trains_body=False)
    seen, with_codes = [], model.discriminator.with_codes
    model.discriminator.with_codes = lambda x, q_detached=False: seen.append(q_detached) or with_codes(x, q_detached)
    fit(model, mnist_dir, max_steps=4)  # 2 batches
    assert seen == [True, True, False] * 2


def test_q_optimizer_generator_trains_the_q_head_in_the_generator_step(mnist_dir):
    """q_optimizer "generator": G's optimizer (and lr) holds the Q head, D's the rest of the discriminator. Under
    Trainer.fit, Q is evaluated with trainable Q parameters only in the generator step (D's body frozen); in
    the discriminator step the Q head is frozen, and the term is computed there only to train the body
    (info_trains_body true)."""
    with pytest.raises(ValueError, match="--model.q_optimizer must be 'discriminator' or 'generator'"):
        tiny_infogan(q_optimizer="both")
    for trains_body in (False, True):
        model = tiny_infogan(q_optimizer="generator", info_trains_body=trains_body, lr_generator=1e-3)
        opt_g, opt_d = model.configure_optimizers()
        q_ids = {id(p) for p in model.discriminator.q_head.parameters()}
        g_ids = {id(p) for group in opt_g.param_groups for p in group["params"]}
        d_ids = {id(p) for group in opt_d.param_groups for p in group["params"]}
        assert g_ids == q_ids | {id(p) for p in model.generator.parameters()} and opt_g.defaults["lr"] == 1e-3
        assert d_ids == {id(p) for p in model.discriminator.parameters()} - q_ids
        seen, with_codes = [], model.discriminator.with_codes
        body, q_head = next(model.discriminator.body.parameters()), next(model.discriminator.q_head.parameters())

        def spy(x, q_detached=False):
            seen.append((q_detached, body.requires_grad, q_head.requires_grad))
            return with_codes(x, q_detached)

        model.discriminator.with_codes = spy
        q_before = [p.detach().clone() for p in model.discriminator.q_head.parameters()]
        trainer = fit(model, mnist_dir, max_steps=4)  # 2 batches
        d_step = [(False, True, False)] * 2 if trains_body else []  # real and fake passes, Q head frozen
        assert seen == (d_step + [(False, False, True)]) * 2
        assert ("train/loss_aux_d" in trainer.callback_metrics) == trains_body
        assert any(not torch.equal(a, b) for a, b in zip(q_before, model.discriminator.q_head.parameters()))


def test_info_weight_zero_trains_exactly_as_the_plain_gan(mnist_dir):
    info = tiny_infogan(info_weight=0)
    plain = GAN(image_shape=(1, 28, 28), num_classes=10, latent_dim=info.code_dim + 4, generator_width=8,
                discriminator_width=8)
    plain.generator.load_state_dict(info.generator.state_dict())
    missing = plain.discriminator.load_state_dict(info.discriminator.state_dict(), strict=False)
    assert not missing.missing_keys and all(k.startswith("q_head.") for k in missing.unexpected_keys)
    plain.draw_latent = info.draw_latent  # the same structured latent, drawn from the same step-keyed noise
    q_before = {k: v.clone() for k, v in info.discriminator.q_head.state_dict().items()}
    info_trainer = fit(info, mnist_dir, max_steps=4)
    fit(plain, mnist_dir, max_steps=4)
    assert "train/loss_aux_d" not in info_trainer.callback_metrics
    for a, b in ((info.generator, plain.generator), (info.discriminator.body, plain.discriminator.body)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(p, q, msg=name)
    for k, v in info.discriminator.q_head.state_dict().items():
        assert torch.equal(v, q_before[k])  # Q is never used: unchanged


def test_info_weight_on_logs_and_trains_q(mnist_dir):
    model = tiny_infogan()
    q_before = [p.detach().clone() for p in model.discriminator.q_head.parameters()]
    trainer = fit(model, mnist_dir, max_steps=2)
    assert {"train/loss_aux_d", "train/loss_aux_g"} <= set(trainer.callback_metrics)
    assert any(not torch.equal(a, b) for a, b in zip(q_before, model.discriminator.q_head.parameters()))


def test_latent_layout_and_code_sampling():
    model = tiny_infogan()
    latent = model.draw_latent(50, torch.Generator().manual_seed(1))
    assert latent.shape == (50, 3 + 4 + 2 + 4)
    for i, k in enumerate((3, 4)):
        one_hot = latent[:, model.categorical_slice(i)]
        assert one_hot.shape == (50, k) and torch.equal(one_hot.sum(1), torch.ones(50))
    continuous = latent[:, model.continuous_slice()]
    assert continuous.min() >= -1 and continuous.max() <= 1 and continuous.std() > 0.3
    categories, cont = model.split_latent(latent)
    torch.testing.assert_close(model.make_latent(categories, cont, latent[:, -4:]), latent)

    ids = torch.tensor([[0, 3], [2, 1], [1, 0]])
    noise = torch.randn(3, 4)
    images = model.sample_codes(3, categories=ids, noise=noise, continuous=torch.zeros(3, 2))
    assert images.shape == (3, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(images, model.decode(model.make_latent(ids, torch.zeros(3, 2), noise)))
    assert model.sample_codes(4, generator=torch.Generator().manual_seed(0)).shape == (4, 1, 28, 28)
    with pytest.raises(ValueError, match=r"categories must have shape \(3, 2\)"):
        model.sample_codes(3, categories=torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"categorical code 1 takes ids in \[0, 3\]"):
        model.sample_codes(1, categories=torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        tiny_infogan(conditional=True)
    with pytest.raises(ValueError, match="categorical_codes"):
        tiny_infogan(categorical_codes=(1,))


def test_traversal_grids_vary_only_their_code():
    model = tiny_infogan()
    seen, original = [], model.decode

    def decode(latents):
        seen.append(latents.clone())
        return original(latents)

    model.decode = decode
    grids = model.traversals(columns=5, steps=6, generator=torch.Generator().manual_seed(0))
    assert list(grids) == ["traversal_categorical_0", "traversal_categorical_1", "traversal_continuous_0",
                           "traversal_continuous_1"]
    rows = {"traversal_categorical_0": 3, "traversal_categorical_1": 4, "traversal_continuous_0": 6}
    for name, r in rows.items():
        assert grids[name].shape == (3, r * 30 + 2, 5 * 30 + 2)  # 28x28 images, padding 2
    base = seen[0][:5]  # row 0 of the first grid
    assert not torch.equal(base[0, -4:], base[1, -4:])  # columns have different noise
    for latents, code, values in zip(seen, [model.categorical_slice(0), model.categorical_slice(1),
                                            model.continuous_slice(0)], [torch.eye(3), torch.eye(4), None]):
        grid = latents.view(-1, 5, latents.shape[1])  # (rows, columns, L)
        others = torch.ones(latents.shape[1], dtype=torch.bool)
        others[code] = False
        assert torch.equal(grid[:, :, others], grid[:1, :, others].expand(len(grid), -1, -1))  # down a column
        assert torch.equal(grid[0, :, -4:], base[:, -4:])  # the same fixed noise in every grid
        if values is not None:
            assert torch.equal(grid[:, :, code], values[:, None, :].expand(-1, 5, -1))
        else:
            torch.testing.assert_close(grid[:, 0, code].flatten(), torch.linspace(-2, 2, 6))


def test_code_traversal_grid_layout():
    latents = torch.arange(6.0).view(2, 3)
    grid = code_traversal(lambda z: z[:, None, None, :].expand(-1, 3, 1, -1), latents, slice(0, 1),
                          torch.tensor([[10.0], [20.0]]))
    assert grid.shape == (3, 2 * 3 + 2, 2 * 5 + 2)  # 2 rows of values x 2 columns; images (3, 1, 3)
    assert grid[0, 2, 2:5].tolist() == [10.0, 1.0, 2.0] and grid[0, 5, 7:10].tolist() == [20.0, 4.0, 5.0]


def test_cluster_accuracy_on_constructed_confusions():
    permuted = torch.tensor([[0, 9, 0], [0, 0, 5], [7, 0, 0]])
    assert cluster_accuracy(permuted) == {"one_to_one": 1.0, "majority": 1.0}
    mixed = torch.tensor([[8, 2], [6, 4]])  # both clusters are mostly class 0
    scores = cluster_accuracy(mixed)
    assert scores["majority"] == pytest.approx(14 / 20) and scores["one_to_one"] == pytest.approx(12 / 20)
    more_clusters = torch.tensor([[5, 0], [0, 5], [3, 0]])  # the third cluster gets no class of its own
    assert cluster_accuracy(more_clusters)["one_to_one"] == pytest.approx(10 / 13)
    assert greedy_assignment(permuted).tolist() == [1, 2, 0]
    assert greedy_assignment(mixed).tolist() == [0, 1] and greedy_assignment(more_clusters).tolist() == [0, 1, -1]


def test_cluster_table_shows_counts_sizes_and_the_mapping():
    merged = torch.tensor([[40, 0, 0], [0, 30, 25], [0, 5, 0]])  # classes 1 and 2 merged in cluster 1
    lines = cluster_table(merged, "category", "label").splitlines()
    assert lines[0].startswith("label counts per category") and set(lines[2]) == {"-"}
    rows = {int(line.split("|")[0]): line.split("|") for line in lines[3:]}
    assert sorted(rows) == [0, 1, 2]
    assert [int(v) for v in rows[1][1].split()] == [0, 30, 25]
    assert rows[0][2].split() == ["40", "->", "0", "(1.00)"]
    assert rows[1][2].split() == ["55", "->", "1", "(0.55)"]
    assert rows[2][2].split() == ["5", "->", "2", "(0.00)"]  # the class left for it: none of its images
    assert cluster_table(torch.tensor([[3, 0], [0, 2], [1, 0]])).splitlines()[-1].split("|")[2].split() == ["1", "->", "-"]


def test_code_and_class_accuracy_on_a_constructed_case():
    model = tiny_infogan(categorical_codes=(10, 3), num_classes=10)
    model.on_test_epoch_start()
    assert model.class_code == 0 and model.evaluator is None and model.inception is None
    latent = model.make_latent(torch.tensor([[1, 0], [2, 1], [3, 2], [4, 0]]),
                               torch.tensor([[0.5, 0.0], [0.0, 0.0], [-0.5, 0.0], [1.0, 0.0]]), torch.zeros(4, 4))
    predicted = (torch.tensor([[1, 0], [2, 2], [0, 2], [4, 0]]),  # code 0: 3 of 4 right; code 1: 3 of 4
                 torch.tensor([[0.5, 0.1], [0.2, 0.1], [-0.5, 0.1], [0.6, 0.1]]))
    model.encode_codes = lambda images: predicted
    model._score_codes(torch.zeros(4, 1, 28, 28), latent)
    # real images with labels: Q's code 0 says (1, 2, 0, 4) for labels (5, 6, 7, 5) -> clusters 1->5, 2->6, 0->7
    # one to one; cluster 4 would also be 5 by majority
    model.test_step({"image": torch.zeros(4, 1, 28, 28), "label": torch.tensor([5, 6, 7, 5])}, 0)
    metrics = model.code_metrics
    assert float(metrics["code_accuracy_0"].compute()) == 0.75 and float(metrics["code_accuracy_1"].compute()) == 0.75
    assert float(metrics["code_mae_0"].compute()) == pytest.approx((0.2 + 0.4) / 4)
    assert float(metrics["code_mae_1"].compute()) == pytest.approx(0.1)
    confusion = metrics["clusters"].compute().view(-1, 10)
    assert cluster_accuracy(confusion) == {"one_to_one": 0.75, "majority": 1.0}


def offline(*args, **kwargs):
    """Stands in for InceptionFeatures on a machine without network access (the test machine may have it)."""
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_inception_offline_gives_one_line_with_the_fix(monkeypatch):
    monkeypatch.setattr(inception_metrics, "InceptionFeatures", offline)
    metrics, message = inception_metrics.make_inception_metrics()
    assert metrics is None and "\n" not in message
    assert "test/fid_inception" in message and "name resolution" in message
    assert "pip install torch-fidelity" in message and inception_metrics.WEIGHTS_URL in message
    assert "--model.inception_weights" in message


def test_inception_scores_with_a_stand_in_network():
    class Tiny(nn.Module):  # a stand-in for Inception: uint8 (B, 3, H, W) -> (B, 4) channel statistics
        def forward(self, x):
            x = x.float() / 255
            return torch.cat([x.mean((2, 3)), x.std((1, 2, 3))[:, None]], 1)

    scores = inception_metrics.InceptionScores(inception_metrics.InceptionFeatures(network=Tiny(), num_features=4),
                                               subset_size=50)
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(40, 1, 8, 8, generator=gen)
    scores.update(real, real=True)
    scores.update(real.clone(), real=False)
    same = scores.compute()
    assert same["fid_inception"].abs() < 1e-2 and same["kid_inception"].abs() < 1e-2
    scores = inception_metrics.InceptionScores(scores.extractor, subset_size=50)
    scores.update(real, real=True)
    scores.update(torch.rand(30, 1, 8, 8, generator=gen) * 0.3, real=False)  # darker, less varied
    different = scores.compute()
    assert different["fid_inception"] > 0.05 and different["kid_inception"] > 0.01


def test_cli_logs_traversals_and_tests_offline(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(inception_metrics, "InceptionFeatures", offline)
    config = os.path.join(REPO, "configs", "infogan_mnist.yaml")
    root = str(tmp_path / "runs")
    args = tiny_args(config, mnist_dir, root, "--model.classifier_path", "null")
    run_cli("fit", [*args, "--trainer.max_steps", "4"])
    written = {os.path.basename(p) for p in glob.glob(os.path.join(root, "*", "samples", "*.png"))}
    for name in ("traversal_categorical_0", "traversal_continuous_0", "traversal_continuous_1"):
        assert {f"{name}_step_0000002.png", f"{name}_step_0000004.png"} <= written  # after batch 1, at the end
    shown = []  # the category x label table, through Lightning's rank-zero log
    handler = logging.Handler()
    handler.emit = lambda record: shown.append(record.getMessage())
    rank_zero_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    rank_zero_log.addHandler(handler)
    try:
        with pytest.warns(UserWarning, match="test/fid_inception and test/kid_inception skipped") as warned:
            tested = run_cli("test", [*args, "--ckpt_path", "last"])
    finally:
        rank_zero_log.removeHandler(handler)
    metrics = tested.trainer.callback_metrics
    table = next(m for m in shown if m.startswith("InfoGAN code 0 on the labelled test images"))
    counted = sum(int(line.split("|")[2].split()[0]) for line in table.splitlines()[4:])
    test_images = sum(len(batch["label"]) for batch in tested.datamodule.test_dataloader())
    assert len(table.splitlines()) == 4 + 10 and counted == test_images > 0  # a row per category, every image
    message = next(str(w.message) for w in warned if "fid_inception" in str(w.message))
    assert "torch-fidelity" in message and "\n" not in message
    assert {"test/code_accuracy_0", "test/code_mae_0", "test/code_mae_1", "test/class_accuracy",
            "test/class_accuracy_majority"} <= set(metrics)
    assert "test/fid_inception" not in metrics
    # the accuracies by hand from the printed table: majority = each row's largest count; one-to-one = the count
    # of the label each row is mapped to (its "-> label"), the mapping giving each label to one row at most
    rows = [line.split("|") for line in table.splitlines()[4:]]
    counts = [[int(v) for v in row[1].split()] for row in rows]
    mapped = [row[2].split("->")[1].split()[0] for row in rows]
    assert len({m for m in mapped if m != "-"}) == len([m for m in mapped if m != "-"])
    one_to_one = sum(c[int(m)] for c, m in zip(counts, mapped) if m != "-") / test_images
    assert float(metrics["test/class_accuracy"]) == pytest.approx(one_to_one)
    assert float(metrics["test/class_accuracy_majority"]) == pytest.approx(sum(map(max, counts)) / test_images)


def inception_weights_file(path: str, monkeypatch) -> str:
    """A weights file in torch-fidelity's format for its Inception-v3 (the real file needs a download): the
    network's own random initialisation, written with torch.save as the published file is."""
    fe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    with monkeypatch.context() as patch:  # build the network without fetching or loading any weights
        patch.setattr(fe, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    return path


@pytest.mark.slow  # Inception-v3 at 299x299 on 16 images
def test_cli_test_reports_inception_fid_kid_with_a_weights_file(mnist_dir, tmp_path, monkeypatch):
    """The real path: torchmetrics' Inception (torch-fidelity's network) loaded from --model.inception_weights,
    run over the test images and the samples; the scores are finite and nothing is skipped."""
    weights = inception_weights_file(str(tmp_path / "inception.pth"), monkeypatch)
    config = os.path.join(REPO, "configs", "infogan_mnist.yaml")
    args = tiny_args(config, mnist_dir, str(tmp_path / "runs"), "--model.classifier_path", "null",
                     "--model.num_eval_samples", "8", "--model.inception_weights", weights)
    run_cli("fit", [*args, "--trainer.max_steps", "2"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # one test batch of 8 images
        metrics = run_cli("test", [*args, "--ckpt_path", "last", "--data.eval_batch_size", "8",
                                   "--trainer.limit_test_batches", "1"]).trainer.callback_metrics
    assert not [w for w in caught if "fid_inception" in str(w.message)]
    scores = {k: float(metrics[f"test/{k}"]) for k in ("fid_inception", "kid_inception", "kid_inception_std")}
    assert all(torch.isfinite(torch.tensor(v)) for v in scores.values()), scores
    assert scores["fid_inception"] > 0  # 8 samples of an untrained generator against 8 test images
    model = InfoGAN.load_from_checkpoint(last_checkpoint(str(tmp_path / "runs")))
    assert model.hparams.inception_weights == weights  # the checkpoint remembers where the weights are


def test_cli_test_on_celeba_without_labels_or_classifier(celeba_dir, tmp_path):
    config = os.path.join(REPO, "configs", "celeba_mixed_latent.yaml")
    args = tiny_args(config, celeba_dir, str(tmp_path / "runs"), "--model.inception_metrics", "false")
    run_cli("fit", [*args, "--trainer.max_steps", "2"])
    metrics = run_cli("test", [*args, "--ckpt_path", "last"]).trainer.callback_metrics
    assert {f"test/code_accuracy_{i}" for i in range(5)} | {f"test/code_mae_{j}" for j in range(4)} <= set(metrics)
    assert not any("class_accuracy" in k or "fid" in k for k in metrics)  # no labels, no classifier, no Inception
