"""COCOAEXPO guest agent: mediates host requests against a measured execution policy."""

__all__ = ["__version__"]

__version__ = "0.1.0"
