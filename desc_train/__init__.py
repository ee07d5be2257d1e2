"""desc_train: data, models, the DESC training stages and evaluation, built on desc_ops."""
__version__ = "0.1.0"
