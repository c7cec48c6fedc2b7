"""``medvision ARGS`` run in the test's own process: the command's own code, without the seconds a
process of its own spends importing torch and the rest (a few tests still start real processes, as a
user runs the command)."""

from __future__ import annotations

import subprocess
import sys


def run_cli(capsys, *args) -> subprocess.CompletedProcess:
    """The command's exit status and what it wrote, as a finished process gives them (a ``SystemExit`` with
    a message: the message on stderr and status 1, as Python ends a process with it)."""
    from medvision.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    out = capsys.readouterr()
    return subprocess.CompletedProcess([str(a) for a in args], code, out.out, out.err)
