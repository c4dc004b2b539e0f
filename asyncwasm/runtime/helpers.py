"""The builtins of generated code: the runtime's side of ``compiler/contract.py``.

Every helper the contract names is provided here, once for all instances, and nothing else: an
instance's globals dict finds them through its ``__builtins__`` (``BUILTINS``), so it holds only
what is its own. A helper the contract names but nothing provides, or one provided but not named,
fails here at import rather than as a ``NameError`` deep in some guest's first call.
"""

from __future__ import annotations

import builtins
import math
import struct
from typing import Any

from ..compiler import contract, numeric, simd_ops
from ..errors import Trap
from . import gc, objects

_PROVIDED: dict[str, Any] = {
    "copysign": math.copysign,
    "_lu32": struct.Struct("<I").unpack_from,
    "_lu64": struct.Struct("<Q").unpack_from,
    "_lu16": struct.Struct("<H").unpack_from,
    "_ls16": struct.Struct("<h").unpack_from,
    "_ls32": struct.Struct("<i").unpack_from,
    "_lf64": struct.Struct("<d").unpack_from,
    "_S8": tuple(b if b < 0x80 else b + 0xFFFFFF00 for b in range(256)),
    "_S8_64": tuple(b if b < 0x80 else b + 0xFFFFFFFFFFFFFF00 for b in range(256)),
    "_su32": struct.Struct("<I").pack_into,
    "_su64": struct.Struct("<Q").pack_into,
    "_su16": struct.Struct("<H").pack_into,
    "_sf64": struct.Struct("<d").pack_into,
    "_trap": Trap,
    "_callee": objects.callee,
    "_tget": objects.table_get,
    "_tset": objects.table_set,
    "_tsize": objects.table_size,
    "_tgrow": objects.table_grow,
    "_tgrow64": objects.table_grow64,
    "_tfill": objects.table_fill,
    "_tcopy": objects.table_copy,
    "_tinit": objects.table_init,
    "_edrop": objects.elem_drop,
    "_minit": objects.memory_init,
    "_ddrop": objects.data_drop,
    "_mcopy": objects.memory_copy,
    "_mcopy2": objects.memory_copy2,
    "_mfill": objects.memory_fill,
    "_WExc": objects.WasmException,
    "_throw": objects.throw,
    "_rethrow": objects.rethrow,
    "_Tail": objects.TailCall,
}


def _build() -> dict[str, Any]:
    if _PROVIDED.keys() != contract.HELPERS.keys():
        raise AssertionError(
            f"helpers and contract differ: {sorted(_PROVIDED.keys() ^ contract.HELPERS.keys())}"
        )
    helpers = dict(_PROVIDED)
    helpers.update((name, getattr(numeric, name)) for name in contract.NUMERIC)
    for table in (simd_ops.HELPERS, gc.HELPERS):  # contract.HELPER_TABLES
        clash = helpers.keys() & table.keys()
        if clash:
            raise AssertionError(f"helper names used twice: {sorted(clash)}")
        helpers.update(table)
    return helpers


HELPERS: dict[str, Any] = _build()
BUILTINS: dict[str, Any] = {**builtins.__dict__, **HELPERS}
