"""Datasets: official formats, downloads with checksums, and the embedded digits."""

from .datasets import (DATASETS, DatasetInfo, binarize, binarize_fixed, dataset_info, load_dataset,
                       load_labeled, no_labels_reason, LabeledSplit)

__all__ = ["DATASETS", "DatasetInfo", "binarize", "binarize_fixed", "dataset_info", "load_dataset", "load_labeled",
           "no_labels_reason", "LabeledSplit"]
