"""Runtime adapter for the upstream wasi-testsuite runner (the module form, Sept 2025 onwards):

    ./run-tests --runtime-adapter /path/to/asyncwasm/tests/wasi_testsuite_adapter.py

It runs each test through the ``asyncwasm run`` CLI, with wasmtime's flag conventions:
``--env K=V``, ``--dir HOST::GUEST``, the module, then the guest's arguments. Importing it has no
side effects (the runner checks ``python adapter.py --version`` prints nothing and exits 0).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def get_name() -> str:
    return "asyncwasm"


def get_version() -> str:
    try:
        from importlib.metadata import version

        return version("asyncwasm")
    except Exception:  # noqa: BLE001 - not installed: running from a checkout
        return "0.1.0"


def get_wasi_versions() -> list[str]:
    return ["wasm32-wasip1"]


def get_wasi_worlds() -> list[str]:
    return ["wasi:cli/command"]


def get_timeout_seconds() -> float:
    return float(os.environ.get("ASYNCWASM_TEST_TIMEOUT", "60"))  # a pure-Python engine needs more than 5 s


def _cli() -> list[str]:
    """The ``asyncwasm`` command of the checkout this adapter lives in; the installed one if it was
    copied elsewhere."""
    if (REPO / "asyncwasm" / "cli" / "__init__.py").is_file():
        return [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            "from asyncwasm.cli import main; main(prog_name='asyncwasm')",
        ]
    script = shutil.which("asyncwasm")
    if script is None:
        raise RuntimeError("asyncwasm is not installed (pip install asyncwasm)")
    return [script]


def compute_argv(
    test_path: str,
    args_env_root: tuple[list[str], dict[str, str], Path | None],
    proposals: list[str],
    wasi_world: str,
    wasi_version: str,
) -> list[str]:
    """``asyncwasm run --env K=V ... --dir ROOT::/ TEST.wasm ARGS...``, as the wasmtime adapter does."""
    args, env, root = args_env_root
    argv = [*_cli(), "run"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    if root is not None:
        argv += ["--dir", f"{root}::/"]
    return [*argv, test_path, *args]


if __name__ == "__main__" and sys.argv[1:] not in ([], ["--version"]):  # print a test's command line
    print(
        " ".join(
            compute_argv(sys.argv[1], ([*sys.argv[2:]], {}, None), [], "wasi:cli/command", "wasm32-wasip1")
        )
    )
