"""Binary format: the module description and the decoder."""

from .reader import decode_module

__all__ = ["decode_module"]
