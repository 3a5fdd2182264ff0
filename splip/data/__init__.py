"""Data: the official ZS-SBIR benchmarks, an embedded synthetic one, and triplet sampling."""

from __future__ import annotations

from splip.data.dataset import SBIRDataset, class_prompt_name, fine_grained_pairs
from splip.data.errors import DatasetNotFoundError, resolve_data_root
from splip.data.images import ImageSet, collate_skip_unreadable
from splip.data.loading import SBIR_DATASETS, load_dataset
from splip.data.sampling import TripletDataset, collate_triplets

__all__ = [
    "SBIR_DATASETS",
    "DatasetNotFoundError",
    "ImageSet",
    "SBIRDataset",
    "TripletDataset",
    "class_prompt_name",
    "collate_skip_unreadable",
    "collate_triplets",
    "fine_grained_pairs",
    "load_dataset",
    "resolve_data_root",
]
