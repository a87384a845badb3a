"""How the collection scores images: the evaluation `Classifier` (a LightningModule trained once per dataset), the
features, distances and scores built on it (`evaluation`, `feature_metrics`), Inception metrics (`inception`) and
the classifier scores of a generative model's `cli.py test` (`SampleScores`)."""

from lightning_models.metrics.classifier import Classifier
from lightning_models.metrics.sample_scores import SampleScores

__all__ = ["Classifier", "SampleScores"]
