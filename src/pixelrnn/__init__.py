"""pixelrnn: PixelCNN, Row LSTM, Diagonal BiLSTM and Multi-Scale PixelRNN with exact discrete likelihoods.

van den Oord, Kalchbrenner, Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
"""

from .checkpoints import load_model, save_model
from .configs import PAPER_CONFIGS, build_paper_model, parameter_count
from .data import load_dataset
from .distributions import bits_per_dim, log_prob_from_logits, nats_to_bits
from .errors import PixelRNNError
from .evaluation import evaluate
from .interrupts import TrainingInterrupted
from .models import ARCHITECTURES, ModelConfig, PixelRNN, build_model
from .multiscale import MultiScaleConfig, MultiScalePixelRNN, build_multiscale
from .sampling import complete, sample
from .training import TrainConfig, train

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
    "evaluate",
    "load_dataset",
    "load_model",
    "log_prob_from_logits",
    "nats_to_bits",
    "parameter_count",
    "sample",
    "save_model",
    "train",
]

__version__ = "0.1.0"
