"""What `cli.py test` reports for `GANInversion`, on the datamodule's test images (torchmetrics, mean over images):

- `test/psnr_encoder`, `test/psnr_optim`, `test/psnr_hybrid` (and `ssim_*`): reconstruction of clean images by
  the encoder alone, by latent optimisation from random starts, and by optimisation from the encoder's guess;
- `test/loss_optim`, `test/loss_hybrid`: the final data loss (mean squared error, images in [-1, 1]) of those
  two optimisations: equal values mean the random starts converged as well as the encoder-initialised ones;
- `test/psnr_denoise_sigma<s>` (and `ssim_*`) for each of `test_sigmas`, against `test/psnr_noisy_sigma<s>`,
  the noisy input itself (hybrid inversion, L2 data term, restarts combined by `combine`);
- `test/psnr_inpaint_hole`: PSNR inside a centred `hole_size` square filled by hybrid inversion (`inpaint_norm`
  data term on the known pixels, restarts combined by `combine`), against `test/psnr_meanfill_hole`, the hole
  filled with the mean of each image's known pixels; `test/ssim_inpaint` on the whole composited image.

PSNR is per image (data range 1) and then averaged. Every score is a torchmetrics state, reduced across DDP ranks.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor
from torchmetrics.aggregation import MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from lightning_models.inversion.restoration import center_mask, corrupt, data_loss, mean_fill


def sigma_name(sigma: float) -> str:
    return f"sigma{sigma:g}"


def metric_key(name: str) -> str:
    return name.replace(".", "_")


class InversionEvaluation:
    """Mixin of `GANInversion`: builds the metrics of the module doc and runs them in the test loop."""

    def build_test_metrics(self) -> None:
        psnr = lambda: PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))  # noqa: E731  per image
        ssim = lambda: StructuralSimilarityIndexMeasure(data_range=1.0)  # noqa: E731
        names = ["encoder", "optim", "hybrid"]
        names += [f"{kind}_{sigma_name(s)}" for s in self.hparams.test_sigmas for kind in ("denoise", "noisy")]
        metrics = {f"psnr_{name}": psnr() for name in names}
        metrics.update({f"ssim_{name}": ssim() for name in [*names, "inpaint"]})
        metrics.update({f"psnr_{name}_hole": PeakSignalNoiseRatio(data_range=1.0, dim=1)
                        for name in ("inpaint", "meanfill")})
        metrics.update({"loss_optim": MeanMetric(), "loss_hybrid": MeanMetric()})
        self.test_metric_names = list(metrics)  # may hold dots (sigma0.3), which module names cannot
        self.test_metrics = nn.ModuleDict({metric_key(name): metric for name, metric in metrics.items()})

    def test_metric(self, name: str):
        return self.test_metrics[metric_key(name)]

    def _score(self, name: str, images: Tensor, originals: Tensor) -> None:
        self.test_metric(f"psnr_{name}").update(images.clamp(0, 1), originals)
        self.test_metric(f"ssim_{name}").update(images.clamp(0, 1), originals)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        h, images = self.hparams, batch["image"]
        rng = torch.Generator(device=self.device).manual_seed(h.seed * 1_000_003 + batch_idx)
        self._score("encoder", self.invert(images, "encoder")[1], images)
        for how in ("optim", "hybrid"):
            _, restored = self.invert(images, how, generator=rng)
            self._score(how, restored, images)
            self.test_metrics[f"loss_{how}"].update(data_loss(restored * 2 - 1, images * 2 - 1, None, "l2"))
        for sigma in h.test_sigmas:
            noisy = corrupt(images, "denoise", sigma, generator=rng)
            self._score(f"noisy_{sigma_name(sigma)}", noisy, images)
            denoised = self.invert(noisy, "hybrid", generator=rng, combine=h.combine)[1]
            self._score(f"denoise_{sigma_name(sigma)}", denoised, images)
        mask = center_mask(tuple(h.image_shape), h.hole_size, self.device)
        observed = corrupt(images, "inpaint", mask=mask)
        filled = self.invert(observed, "hybrid", mask, h.inpaint_norm, rng, h.combine)[1]
        filled = observed * mask + filled * (1 - mask)
        hole = (mask == 0).expand_as(images)
        per_image = lambda x: x[hole].view(len(images), -1)  # noqa: E731  the hole's pixels, (B, hole pixels)
        self.test_metrics["psnr_inpaint_hole"].update(per_image(filled), per_image(images))
        self.test_metrics["psnr_meanfill_hole"].update(per_image(mean_fill(observed, mask)), per_image(images))
        self.test_metrics["ssim_inpaint"].update(filled, images)

    def on_test_epoch_end(self) -> None:
        self.log_dict({f"test/{name}": self.test_metric(name).compute() for name in self.test_metric_names})
        for metric in self.test_metrics.values():
            metric.reset()
