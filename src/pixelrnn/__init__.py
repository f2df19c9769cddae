"""pixelrnn: PixelCNN, Row LSTM and Diagonal BiLSTM with exact discrete likelihoods.

van den Oord, Kalchbrenner, Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
"""

from .configs import PAPER_CONFIGS, build_paper_model, parameter_count
from .distributions import bits_per_dim, log_prob_from_logits, nats_to_bits
from .models import ARCHITECTURES, ModelConfig, PixelRNN, build_model

__all__ = [
    "ARCHITECTURES",
    "PAPER_CONFIGS",
    "ModelConfig",
    "PixelRNN",
    "bits_per_dim",
    "build_model",
    "build_paper_model",
    "log_prob_from_logits",
    "nats_to_bits",
    "parameter_count",
]

__version__ = "0.1.0"
