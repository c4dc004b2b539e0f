"""serve-stdin against hostile clients, on real sockets: a real server (in process on asyncio and trio,
or ``python -m asyncwasm serve-stdin`` where the whole process matters: memory, descriptors), a
client that misbehaves, and a bound in time on what the server must do about it.

``ASYNCWASM_HOSTILE_PUSH_MIB=1024`` makes the backpressure test push 1 GiB instead of 200 MiB
(the figure in docs/serve.md); ``-s`` shows the measured numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from serve_guests import HOSTILE
from serve_helpers import cli_server, guest_file, push

BACKENDS = ["asyncio", "trio"]
MIB = 1 << 20
PUSH = int(os.environ.get("ASYNCWASM_HOSTILE_PUSH_MIB", "200")) * MIB


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    return guest_file(tmp_path, HOSTILE, "hostile.wasm")


# ---- 6: a client pushing at a guest that reads late or never ------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_client_pushing_at_a_guest_that_never_reads_is_held_back(
    tmp_path: Path, hostile: Path, backend: str
) -> None:
    with cli_server(tmp_path, "--port", "0", "--workers", "1", "--backend", backend, str(hostile)) as proc:
        base = proc.status("VmHWM")
        sent, _ = push(proc.port, b"late", PUSH, seconds=2.0)  # the guest never reads again
        never = proc.status("VmHWM")
        assert sent < 64 * MIB  # held back by the socket buffers, not read into the server
        sent_late, answer = push(proc.port, b"sink", PUSH, seconds=30.0)  # reads after 200 ms, all of it
        late = proc.status("VmHWM")
        assert (sent_late, answer) == (PUSH, b"sunk")
        print(
            f"\n{backend}: peak RSS {base >> 10} MiB at start, {never >> 10} MiB after a client pushed for 2 s "
            f"at a guest that never reads (it got {sent / MIB:.1f} MiB in), {late >> 10} MiB after "
            f"{PUSH // MIB} MiB went through a guest that reads late"
        )
        assert never - base < 32 * 1024 and late - base < 32 * 1024  # KiB: a bounded buffer per connection
        assert late < 300 * 1024
