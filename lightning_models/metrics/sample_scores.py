"""`cli.py test` of a generative model: `num_eval_samples` samples scored against the test split in a pretrained
classifier's feature space (`classifier_path`; Fréchet distance, KID, precision/recall, accuracy; see
`lightning_models.metrics.evaluation`).

`SampleScores` is a mixin: a model lists it before `GenerativeModule` (`class GAN(SampleScores, GenerativeModule)`),
whose `sample()` it draws from. Models with test metrics of their own (InfoGAN, VAE) set `test_needs_classifier =
False` and call `super()` in their test hooks, so the classifier scores join theirs when a classifier is given;
`scored_labels` says which classes the classifier scores (the VAE: the digits, its samples drawn unconditionally).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_models.base import GenerativeModule
from lightning_models.metrics.evaluation import SampleEvaluator, sample_in_chunks
from lightning_models.progress import phase_progress


class SampleScores(GenerativeModule):
    """The classifier scores of `cli.py test` for a `GenerativeModule` (see the module's doc)."""

    def _no_classifier_message(self) -> str:
        return (f"--model.classifier_path: test on {type(self).__name__} needs a classifier checkpoint (train one "
                "with `python cli.py fit --config configs/classifier_mnist.yaml`, then pass runs/classifier_mnist)")

    #: whether `test` needs `classifier_path` (models with test metrics of their own, InfoGAN and VAE, do not)
    test_needs_classifier: bool = True

    def scored_labels(self) -> tuple[int, bool]:
        """(the classifier's classes, whether samples are drawn per class) of the classifier scores: the model's
        own label space by default. A model conditioned on something else than the classes (the VAE on colors)
        returns (classes, False): its samples are then drawn without a request and scored unconditionally."""
        return self.num_classes, self.conditional

    def _evaluator(self, path: str) -> SampleEvaluator:
        return SampleEvaluator(path, *self.scored_labels())

    def check_inputs(self, stage: str) -> None:
        """`test` reads the classifier of `classifier_path`: checked (and kept for the test) before anything
        starts, and refused there when it is missing (for the models that need it)."""
        super().check_inputs(stage)
        path = self.hparams.get("classifier_path")
        if stage == "test" and not path and self.test_needs_classifier:
            raise ValueError(self._no_classifier_message())
        if stage == "test" and path:
            self.__dict__["_checked_evaluator"] = (path, self._evaluator(path))

    def on_test_epoch_start(self) -> None:
        path = getattr(self.hparams, "classifier_path", None)
        if not path:
            if self.test_needs_classifier:
                raise ValueError(self._no_classifier_message())
            self.evaluator = None
            return
        checked_path, evaluator = self.__dict__.pop("_checked_evaluator", (None, None))
        if checked_path != path:
            evaluator = self._evaluator(path)
        self.evaluator = evaluator.to(self.device)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if self.evaluator is not None:
            self.evaluator.update_real(batch["image"], batch.get("label"))

    def on_test_epoch_end(self) -> None:
        if self.evaluator is None:
            del self.evaluator
            return
        num_classes, conditional = self.scored_labels()
        rng = torch.Generator(device=self.device).manual_seed(12345 + self.global_rank)
        n, rank, world = self.hparams.num_eval_samples, self.global_rank, self.trainer.world_size
        batch_size = self.trainer.datamodule.eval_batch_size
        with phase_progress(self.trainer, f"test: sampling for the classifier metrics (batches of {batch_size})",
                            len(range(rank, n, world)), "samples") as progress:
            for images, labels in sample_in_chunks(
                lambda k, y: self.sample(k, y, generator=rng), n, batch_size, num_classes, conditional,
                self.device, rank=rank, world_size=world,
            ):
                self.evaluator.update_fake(images, labels)
                progress(len(images))
        with phase_progress(self.trainer, "test: computing the scores (Fréchet distance, KID, precision/recall)"):
            scores = self.evaluator.compute()
        self.log_dict({f"test/{k}": v for k, v in scores.items()}, sync_dist=False)
        del self.evaluator
