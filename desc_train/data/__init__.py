"""Data of desc_train: the on-disk layout, the Dataset, and the embedded
procedural two-domain street-scene benchmark."""
from .dataset import Augment, DepthDataset
from .generate import generate_benchmark, generate_split
from .layout import DataError, SplitMeta, read_meta, read_sample, write_meta, write_sample
from .sheet import contact_sheet

__all__ = ["Augment", "DepthDataset", "generate_benchmark", "generate_split", "DataError", "SplitMeta",
           "read_meta", "read_sample", "write_meta", "write_sample", "contact_sheet"]
