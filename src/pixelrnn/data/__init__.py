"""Datasets: official formats, downloads with checksums, and the embedded digits."""

from .datasets import DATASETS, DatasetInfo, binarize, binarize_fixed, dataset_info, load_dataset

__all__ = ["DATASETS", "DatasetInfo", "binarize", "binarize_fixed", "dataset_info", "load_dataset"]
