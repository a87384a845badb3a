"""Speed options (`lightning_models.performance`) through the real CLI: they change neither the results (beyond
float rounding) nor the checkpoints, and they refuse what they cannot do with a clear message."""

import ctypes
import os

import pytest
import torch

import lightning_models.performance as performance
from lightning_models import GAN
from lightning_models.performance import CompileNetworks, _channels_last
from tests.helpers import REPO, last_checkpoint, run_cli, state_of, tiny_args

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
DCGAN = os.path.join(REPO, "configs", "dcgan_mnist.yaml")
CHANNELS_LAST = ["--trainer.callbacks+=lightning_models.performance.ChannelsLast"]
COMPILE = ["--trainer.callbacks+=lightning_models.performance.CompileNetworks",
           "--trainer.callbacks.backend=aot_eager"]  # AOTAutograd graphs, no C++ code generation (fast)


def fit(mnist_dir, root, *extra):
    return run_cli("fit", tiny_args(DCGAN, mnist_dir, root, "--trainer.deterministic", "true",
                                    "--trainer.max_steps", "6", *extra))


def resume_to_step_10(mnist_dir, root, *extra):
    """Continues the run under `root` from its last.ckpt to step 10; returns its global step."""
    return run_cli("fit", tiny_args(DCGAN, mnist_dir, root, "--trainer.max_steps", "10", "--ckpt_path", "last",
                                    *extra)).trainer.global_step


def assert_close_states(a, b):
    assert a.keys() == b.keys()  # same parameter names: checkpoints interchange
    for key in a:
        torch.testing.assert_close(a[key].float(), b[key].float(), atol=1e-4, rtol=1e-4, msg=key)


def test_channels_last_converts_weights_and_batches_and_trains_the_same(mnist_dir, tmp_path):
    plain = fit(mnist_dir, str(tmp_path / "plain"))
    nhwc = fit(mnist_dir, str(tmp_path / "nhwc"), *CHANNELS_LAST)
    convs = [m.weight for m in nhwc.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in plain.model.modules()
                   if isinstance(m, torch.nn.Conv2d))
    assert_close_states(state_of(last_checkpoint(str(tmp_path / "plain")))["state_dict"],
                        state_of(last_checkpoint(str(tmp_path / "nhwc")))["state_dict"])
    # a run resumes with the option dropped (and the plain one with it added)
    assert resume_to_step_10(mnist_dir, str(tmp_path / "nhwc")) == 10
    assert resume_to_step_10(mnist_dir, str(tmp_path / "plain"), *CHANNELS_LAST) == 10
    batch = {"image": torch.rand(2, 3, 4, 4), "label": torch.tensor([0, 1]), "codes": torch.rand(2, 5)}
    _channels_last(batch)
    assert batch["image"].is_contiguous(memory_format=torch.channels_last) and batch["label"].shape == (2,)


def test_compiled_networks_train_the_same_and_keep_checkpoints(mnist_dir, tmp_path):
    plain = fit(mnist_dir, str(tmp_path / "plain"))
    compiled = fit(mnist_dir, str(tmp_path / "compiled"), *COMPILE)
    model = compiled.model
    assert model.generator._compiled_call_impl is not None and model.discriminator._compiled_call_impl is not None
    assert model.generator_ema._compiled_call_impl is None  # frozen: left eager
    assert plain.model.generator._compiled_call_impl is None
    ckpt = last_checkpoint(str(tmp_path / "compiled"))
    assert_close_states(state_of(last_checkpoint(str(tmp_path / "plain")))["state_dict"], state_of(ckpt)["state_dict"])
    assert GAN.load_from_checkpoint(ckpt).sample(3).shape == (3, 1, 28, 28)  # a plain model loads it
    assert resume_to_step_10(mnist_dir, str(tmp_path / "compiled")) == 10  # and a plain run resumes it


def test_compile_leaves_gradient_penalty_discriminators_eager(mnist_dir, tmp_path):
    with pytest.warns(UserWarning, match="discriminator stays eager: the gradient penalty"):
        cli = fit(mnist_dir, str(tmp_path), *COMPILE, "--model.loss", "wgan_gp")
    assert cli.model.discriminator._compiled_call_impl is None and cli.model.generator._compiled_call_impl is not None


def test_compile_names_the_submodules_when_one_is_unknown():
    model = GAN(generator_width=8, discriminator_width=8)
    with pytest.raises(ValueError, match=r"GAN has no submodule 'decoder'; set `modules` to some of .*'generator'"):
        CompileNetworks(modules=["decoder"]).setup(None, model, "fit")


@pytest.mark.slow
@pytest.mark.parametrize("config,family", [pytest.param(c, f, id=c) for c, f in [
    ("celeba_mixed_latent", []),
    # ResNet and U-Net translators, cut to one block / one downsampling: compiling is the cost here
    # (one network of each kind: the other direction's generator and discriminator are the same classes)
    ("cyclegan_colored_mnist", ["--model.generator", "resnet", "--model.generator_blocks", "1",
                                "--model.downsamplings", "1",  # its config uses recolor generators
                                "--trainer.callbacks.modules=[generator_ab,discriminator_a]"]),
    ("pix2pix_colored_mnist", ["--model.downsamplings", "1"]),
    ("vae_joint_colored_mnist", []),
    ("latent_cgan_mnist", []),
    ("few_label_mnist", []),
    ("inversion_mnist", []),
]])
def test_both_options_run_each_network_family(config, family, mnist_dir, celeba_dir, tmp_path):
    """Every kind of network of the collection (64x64 DCGAN with a Q head, ResNet and U-Net translators, patch
    discriminators of single images and of pairs, VAE, frozen autoencoder, classifier, inversion encoder) trains
    and predicts in channels-last format with its networks compiled."""
    path = os.path.join(REPO, "configs", f"{config}.yaml")
    args = tiny_args(path, celeba_dir if "celeba" in config else mnist_dir, str(tmp_path), *CHANNELS_LAST, *COMPILE,
                     *family)
    model = run_cli("fit", [*args, "--trainer.max_steps", "4"]).model
    compiled = [n for n, c in model.named_children() if getattr(c, "_compiled_call_impl", None) is not None]
    assert compiled and all(any(p.requires_grad for p in getattr(model, n).parameters()) for n in compiled)
    out = run_cli("predict", [*args, "--ckpt_path", "last", "--trainer.limit_predict_batches", "1"])
    assert out.trainer.state.finished


@pytest.mark.parametrize("nvml_loads", [False, True])
def test_nvml_probe_dropped_only_where_nvml_cannot_load(monkeypatch, nvml_loads):
    """Without the NVML library, torch's NVML-based CUDA check fails its library load at every optimizer step and
    then asks cudaGetDeviceCount, as it does without the variable: only then is the variable dropped."""
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    loads = []

    def cdll(name):
        loads.append(name)
        if not nvml_loads:
            raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    assert performance.skip_failing_nvml_probe() is not nvml_loads
    assert loads == ["libnvidia-ml.so.1"]
    assert os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == ("1" if nvml_loads else None)
    loads.clear()
    assert performance.skip_failing_nvml_probe() is False  # nothing left to do (or a driver is there)
    assert len(loads) == int(nvml_loads)
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)  # a CPU-only build never probes
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    assert performance.skip_failing_nvml_probe() is False and os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
