"""The architectures, by name: each is one file with a :class:`pixelrnn.models.block.Block`
subclass, and one line here. The configuration checks, the command line's choices, model
summaries and ``pixelrnn architectures`` all read this table."""

from __future__ import annotations

from .block import Block
from .diagonal_bilstm import DiagonalBiLSTM
from .gated_pixelcnn import GatedPixelCNNBlock
from .pixelcnn import PixelCNNBlock
from .row_lstm import RowLSTM

ARCHITECTURES: dict[str, type[Block]] = {block.name: block for block in (
    PixelCNNBlock,
    RowLSTM,
    DiagonalBiLSTM,
    GatedPixelCNNBlock,
)}
