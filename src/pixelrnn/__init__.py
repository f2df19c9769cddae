"""pixelrnn: PixelCNN, Row LSTM, Diagonal BiLSTM, Gated PixelCNN and Multi-Scale PixelRNN with
exact discrete likelihoods.

van den Oord, Kalchbrenner, Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.

The package's folders are its map: ``layers`` (masks, masked convolutions, the LSTM scan),
``models`` (the block protocol, one file per architecture, the registry, the models as
distributions), ``generation`` (the raster-order sampler), ``training`` (the loop, evaluation,
checkpoints), ``data`` (datasets), ``cli`` (the command line).
"""

from . import denormals
from .data import load_dataset
from .errors import PixelRNNError
from .generation import complete, sample, sample_to_file
from .models import (ARCHITECTURES, ModelConfig, MultiScaleConfig, MultiScalePixelRNN, PixelRNN,
                     build_model, build_multiscale)
from .models.configs import PAPER_CONFIGS, build_paper_model, parameter_count
from .models.distribution import bits_per_dim, log_prob_from_logits, nats_to_bits
from .training import TrainConfig, train
from .training.checkpoints import load_model, save_model
from .training.evaluation import evaluate
from .training.interrupts import TrainingInterrupted

__all__ = [
    "ARCHITECTURES",
    "PAPER_CONFIGS",
    "ModelConfig",
    "MultiScaleConfig",
    "MultiScalePixelRNN",
    "PixelRNN",
    "PixelRNNError",
    "TrainConfig",
    "TrainingInterrupted",
    "bits_per_dim",
    "build_model",
    "build_multiscale",
    "build_paper_model",
    "complete",
    "denormals",
    "evaluate",
    "load_dataset",
    "load_model",
    "log_prob_from_logits",
    "nats_to_bits",
    "parameter_count",
    "sample",
    "sample_to_file",
    "save_model",
    "train",
]

__version__ = "0.1.0"
