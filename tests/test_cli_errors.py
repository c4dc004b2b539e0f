"""``asyncwasm run`` when things go wrong, and its --help, --max-memory and --invoke, through a subprocess.

Every failure is one ``error:`` line on stderr, never a Python traceback. Status 1 means something
the command names cannot be used (the module file, a directory, an import, an export, the --invoke
arguments); status 2 means the command line itself is wrong (click's usage status); a trap is 134.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from wat import instr_offset, wat

REPO = Path(__file__).resolve().parents[1]

MATH = """
(module
  (memory (export "mem") 1)
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "neg") (result i32) i32.const -5)
  (func (export "big") (param i64) (result i64) local.get 0)
  (func (export "floats") (param f32 f64) (result f32 f64) local.get 0 local.get 1)
  (func (export "nothing"))
  (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
  (func (export "size") (result i32) memory.size))
"""

BOOM = """
(module
  (func $inner (param i32) (result i32) local.get 0 drop unreachable)
  (func $outer (export "_start") i32.const 1 call $inner drop))
"""


def exiting_with(code: int) -> str:
    return f"""
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") i32.const {code} call $exit))
"""


def cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m asyncwasm ARGS`` from this checkout."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "asyncwasm", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def module(tmp_path: Path, name: str, text_or_bytes: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(wat(text_or_bytes) if isinstance(text_or_bytes, str) else text_or_bytes)
    return path


def one_error_line(done: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    """The run failed with ``status`` and exactly one ``error:`` line that mentions ``words``."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == status, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert done.stdout == ""
    return lines[0]


# --- status 1: something the command names cannot be used ----------------------------------------


# (func (result i32)) with an empty body: decodes, but fails validation (nothing left to return)
INVALID = bytes.fromhex("0061736d010000000105016000017f030201000a040102000b")


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("malformed", b"this is not wasm", ["malformed module", "magic header"]),
        ("truncated", b"\0asm\x01\0\0\0\x01\x05", ["malformed module"]),
        ("invalid", INVALID, ["invalid module", "type mismatch"]),
        (
            "missing_import",
            '(module (import "env" "nothere" (func)) (func (export "_start")))',
            ["failed to link", "env::nothere"],
        ),
        (
            "missing_wasi_import",
            '(module (import "wasi_snapshot_preview1" "no_such_call" (func)))',
            ["failed to link", "no_such_call"],
        ),
    ],
)
def test_module_that_cannot_run(name: str, content: str | bytes, words: list[str], tmp_path: Path) -> None:
    path = module(tmp_path, f"{name}.wasm", content)
    one_error_line(cli("run", path, cwd=tmp_path), 1, str(path), *words)


def test_module_is_a_directory_or_missing(tmp_path: Path) -> None:
    one_error_line(cli("run", tmp_path, cwd=tmp_path), 1, "is a directory")
    one_error_line(cli("run", tmp_path / "nope.wasm", cwd=tmp_path), 1, "no such file", "nope.wasm")


def test_dir_that_is_not_there(tmp_path: Path) -> None:
    hello = module(tmp_path, "hello.wasm", exiting_with(0))
    one_error_line(
        cli("run", "--dir", f"{tmp_path / 'missing'}::/data", hello, cwd=tmp_path),
        1,
        "--dir",
        "no such directory",
    )
    one_error_line(cli("run", "--dir", hello, hello, cwd=tmp_path), 1, "not a directory")


def test_module_without_start(tmp_path: Path) -> None:
    path = module(tmp_path, "math.wasm", MATH)
    one_error_line(cli("run", path, cwd=tmp_path), 1, "no _start", "--invoke", "add")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--invoke", "missing"], ["no function named 'missing'", "add, neg"]),
        (["--invoke", "mem"], ["no function named 'mem'"]),
        (["--invoke", "add", "{m}", "1"], ["add takes 2 arguments", "1 given"]),
        (["--invoke", "neg", "{m}", "1"], ["neg takes 0 arguments", "1 given"]),
        (["--invoke", "add", "{m}", "1", "x"], ["'x' is not a valid i32"]),
        (["--invoke", "add", "{m}", "1", "0x100000000"], ["does not fit in an i32"]),
        (["--invoke", "big", "{m}", "1.5"], ["not a valid i64"]),
        (["--invoke", "floats", "{m}", "one", "2"], ["not a valid f32"]),
    ],
)
def test_invoke_mistakes(args: list[str], words: list[str], tmp_path: Path) -> None:
    path = module(tmp_path, "math.wasm", MATH)
    argv = [str(path) if a == "{m}" else a for a in args]
    if str(path) not in argv:
        argv.append(str(path))
    one_error_line(cli("run", *argv, cwd=tmp_path), 1, *words)


def test_memory_minimum_over_max_memory(tmp_path: Path) -> None:
    path = module(tmp_path, "big.wasm", '(module (memory 4) (func (export "_start")))')
    one_error_line(cli("run", "--max-memory", "128KiB", path, cwd=tmp_path), 1, "4 pages", "--max-memory")


def test_exit_code_a_process_cannot_carry(tmp_path: Path) -> None:
    path = module(tmp_path, "exit.wasm", exiting_with(256))
    one_error_line(cli("run", path, cwd=tmp_path), 1, "256")


# --- status 2: the command line itself is wrong ----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--fuel", "lots"], ["--fuel", "'lots' is not a whole number"]),
        (["--fuel", "-1"], ["--fuel", "negative"]),
        (["--timeout", "soon"], ["--timeout", "not a duration"]),
        (["--timeout", "0s"], ["--timeout", "not a positive duration"]),
        (["--max-memory", "12 parsecs"], ["--max-memory", "not a size"]),
        (["--dir", "a::"], ["--dir", "HOST::GUEST"]),
        (["--env", "=value"], ["--env", "no variable name"]),
        (["--bogus"], ["No such option", "--bogus"]),
        (["--fuel"], ["--fuel", "requires an argument"]),
    ],
)
def test_bad_option(options: list[str], words: list[str], tmp_path: Path) -> None:
    path = module(tmp_path, "math.wasm", MATH)
    args = [*options, path] if options != ["--fuel"] else options
    one_error_line(cli("run", *args, cwd=tmp_path), 2, *words, "--help")


def test_no_module(tmp_path: Path) -> None:
    one_error_line(cli("run", cwd=tmp_path), 2, "Missing argument 'MODULE'")


# --- help ------------------------------------------------------------------------------------------


def test_help(tmp_path: Path) -> None:
    top = cli("--help", cwd=tmp_path)
    assert top.returncode == 0 and top.stderr == ""
    assert "Examples:" in top.stdout and "asyncwasm run" in top.stdout and "run" in top.stdout
    done = cli("run", "--help", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    text = done.stdout
    assert "Examples:" in text and "--invoke add math.wasm 2 3" in text
    for option in ("--dir", "--env", "--fuel", "--timeout", "--max-memory", "--invoke", "--stats"):
        assert option in text
    statuses = text.split("Exit status:", 1)[1].split("Examples:", 1)[0]
    for status in ("134", "1", "2", "N"):
        assert re.search(rf"^\s+{status}\s", statuses, re.M), statuses
    assert cli("run", "-h", cwd=tmp_path).stdout == text


# --- what works: options before the module, the guest's arguments after it -------------------------


def test_guest_arguments_are_passed_as_they_are(tmp_path: Path, shared: Path) -> None:
    """Everything after MODULE is the guest's, even what looks like an option; argv[0] is the file name."""
    args_wasm = shared / "corpus" / "wasm" / "args.wasm"
    done = cli("run", "--env", "A=1", args_wasm, "--fuel", "x", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:4] == [
        "argc=4",
        "argv[0]=[args.wasm]",
        "argv[1]=[--fuel]",
        "argv[2]=[x]",
    ]


def test_exit_status_is_the_proc_exit_code(tmp_path: Path) -> None:
    for code in (0, 7, 255):
        done = cli("run", module(tmp_path, f"exit{code}.wasm", exiting_with(code)), cwd=tmp_path)
        assert (done.returncode, done.stderr) == (code, "")


def test_trap_report(tmp_path: Path) -> None:
    """Status 134; frames innermost first as ``N: 0xOFFSET - module!function``, then the message."""
    wasm = wat(BOOM)
    path = module(tmp_path, "boom.wasm", wasm)
    done = cli("run", path, cwd=tmp_path)
    assert done.returncode == 134
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    at = next(
        i for i, line in enumerate(lines) if line.strip().endswith("error while executing at wasm backtrace:")
    )
    frames = [re.match(r"^\s*(\d+): (0x[0-9a-f]+) - (.+)$", line) for line in lines[at + 1 : at + 3]]
    assert all(frames), done.stderr
    assert [(m.group(1), m.group(3)) for m in frames if m] == [("0", "boom!inner"), ("1", "boom!outer")]
    first = frames[0]
    assert first is not None and int(first.group(2), 16) == instr_offset(wasm, "inner", "unreachable")
    assert lines[at + 3].strip() == "1: wasm trap: wasm `unreachable` instruction executed"


# --- --max-memory and --invoke ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "delta", "expected"),
    [
        ("128KiB", "1", "1"),  # 1 page -> 2 pages: allowed
        ("128KiB", "2", "-1"),  # 3 pages: refused, memory.grow returns -1
        ("131071", "1", "-1"),  # rounded down to 1 page
        ("1GiB", "100", "1"),
    ],
)
def test_max_memory_limits_memory_grow(limit: str, delta: str, expected: str, tmp_path: Path) -> None:
    path = module(tmp_path, "math.wasm", MATH)
    done = cli("run", "--max-memory", limit, "--invoke", "grow", path, delta, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{expected}\n", "")


@pytest.mark.parametrize(
    ("export", "args", "printed"),
    [
        ("add", ["2", "3"], ["5"]),
        ("add", ["0x7fffffff", "1"], ["-2147483648"]),  # i32 results print signed
        ("add", ["4294967295", "0"], ["-1"]),  # unsigned input accepted
        ("neg", [], ["-5"]),
        ("big", ["-9223372036854775808"], ["-9223372036854775808"]),
        ("big", ["0xffffffffffffffff"], ["-1"]),
        ("big", ["9223372036854775807"], ["9223372036854775807"]),
        ("floats", ["0.1", "0.1"], ["0.1", "0.1"]),  # f32 in its shortest form, not 0.10000000149011612
        ("floats", ["-1.5e10", "inf"], ["-15000000000.0", "inf"]),
        ("floats", ["nan", "-0"], ["nan", "-0.0"]),
        ("nothing", [], []),
    ],
)
def test_invoke_prints_results(export: str, args: list[str], printed: list[str], tmp_path: Path) -> None:
    path = module(tmp_path, "math.wasm", MATH)
    done = cli("run", "--invoke", export, path, *args, cwd=tmp_path)
    assert (done.returncode, done.stdout.splitlines(), done.stderr) == (0, printed, "")


def test_invoke_on_a_wasi_reactor(tmp_path: Path) -> None:
    """A WASI module's export gets the arguments too, after the reactor's _initialize has run."""
    path = module(
        tmp_path,
        "reactor.wasm",
        """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $base (mut i32) (i32.const 0))
  (data (i32.const 16) "ready\\n")
  (func (export "_initialize")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 6))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (global.set $base (i32.const 100)))
  (func (export "plus") (param i32) (result i32) global.get $base local.get 0 i32.add))
""",
    )
    done = cli("run", "--invoke", "plus", path, "5", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ready\n105\n", "")


def test_stats(tmp_path: Path) -> None:
    path = module(tmp_path, "math.wasm", MATH)
    done = cli("run", "--stats", "--fuel", "1000", "--invoke", "add", path, "1", "2", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "3\n"
    assert re.fullmatch(r"fuel used: \d+, slices: \d+, time: \d+\.\d+s\n", done.stderr), done.stderr
