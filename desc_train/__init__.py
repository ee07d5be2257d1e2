"""desc_train: data, models, the DESC training stages and evaluation, built on desc_ops."""


def __getattr__(name: str):
    # One version for the whole desc-ops distribution (desc_ops reads it from the
    # package metadata); looked up on first use so that importing desc_train (the
    # CLI's start) does not load torch and the kernels.
    if name == "__version__":
        from desc_ops import __version__

        return __version__
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
