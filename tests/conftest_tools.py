"""require_tool(): skip a test whose toolchain or emulator is missing, or fail under TSL_REQUIRE_TOOLCHAINS=1."""
import os
import shutil

import pytest


def require_tool(name, install=""):
    """The path of executable `name` (or of file `name` if it is an absolute path); pytest.skip if
    absent, pytest.fail instead if TSL_REQUIRE_TOOLCHAINS=1."""
    path = (name if os.path.exists(name) else None) if os.path.isabs(name) else shutil.which(name)
    if path:
        return path
    msg = f"{name} not found" + (f": install {install}" if install else "")
    if os.environ.get("TSL_REQUIRE_TOOLCHAINS") == "1":
        pytest.fail(msg + " (TSL_REQUIRE_TOOLCHAINS=1)")
    pytest.skip(msg)


def require_toolchain(board):
    """require_tool for a board's compiler and the tools a driver script behind it runs ([toolchain] tools)."""
    tc = board.toolchain
    require_tool(tc["cc"], tc.get("install", ""))
    for t in tc.get("tools", []):
        require_tool(t, tc.get("install", ""))
