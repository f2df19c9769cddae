"""The models: a block protocol (block.py), one file per architecture, their registry, the
PixelRNN that stacks blocks of one architecture, and the Multi-Scale PixelRNN of two of them.
Every model is a distribution over images (distribution.py)."""

from .multiscale import MultiScaleConfig, MultiScalePixelRNN, build_multiscale, model_from_config
from .pixelrnn import ModelConfig, PixelRNN, build_model
from .registry import ARCHITECTURES

__all__ = ["ARCHITECTURES", "ModelConfig", "MultiScaleConfig", "MultiScalePixelRNN", "PixelRNN",
           "build_model", "build_multiscale", "model_from_config"]
