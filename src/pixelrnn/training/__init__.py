"""Training, evaluation and checkpoints: a run's configuration (config.py), the loop
(trainer.py), exact evaluation, safetensors checkpoints, clean stops and the run lock."""

from .config import TrainConfig
from .trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "train"]
