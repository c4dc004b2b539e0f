"""``python -m asyncwasm``: the same as the ``asyncwasm`` command."""

from .cli import main_guard

main_guard()
