"""Child processes (compilers, emulators, flashers) that end when tinyslm ends.

Every child starts in its own process group, with the kernel told to kill it if tinyslm dies
(PR_SET_PDEATHSIG), and is listed here until it is reaped. On an error, a timeout, Ctrl-C,
SIGTERM or at exit, the whole group of each listed child is terminated, then killed: a qemu
started through `timeout` or a shell wrapper goes with it.
"""
import atexit
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

_LIVE = set()           # Popen objects not yet reaped


class Timeout(Exception):
    pass


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every `finally` and context manager runs."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)           # PR_SET_PDEATHSIG
        if os.getppid() == 1:                   # the parent died before prctl took effect
            os._exit(1)
    except (OSError, AttributeError):
        pass


def popen(cmd, **kw):
    """subprocess.Popen in a new process group that dies with tinyslm; tracked until stop()."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(cmd, start_new_session=True,
                         preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None, **kw)
    _LIVE.add(p)
    return p


def stop(p, grace=3.0):
    """Terminate `p`'s whole process group (SIGTERM, then SIGKILL after `grace` s) and reap it."""
    if p.poll() is None:
        _signal_group(p, signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(p, signal.SIGKILL)         # what the child itself started (its group) goes too
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    _LIVE.discard(p)


def _signal_group(p, sig):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(cmd, timeout=None, input=None, cwd=None, stdin=subprocess.DEVNULL):
    """-> CompletedProcess (stdout, stderr as bytes). Raises Timeout after `timeout` s; on any
    exception (Ctrl-C, SIGTERM) the child's group is stopped before it propagates."""
    p = popen(cmd, cwd=cwd, stdin=subprocess.PIPE if input is not None else stdin,
              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(p, grace=1.0)
        raise Timeout(f"{cmd[0]} did not finish within {timeout} s") from None
    except BaseException:
        stop(p, grace=1.0)
        raise
    stop(p, grace=0.5)                       # reaps; ends any grandchild left in its group
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def stop_all():
    for p in list(_LIVE):
        stop(p, grace=1.0)


_installed = False


def install_signal_handlers():
    """SIGTERM and SIGHUP raise Terminated in the main thread (so cleanups run); at exit every
    child still listed is stopped."""
    global _installed
    def handler(signum, frame):
        raise Terminated(signum)
    if threading.current_thread() is threading.main_thread():   # signal.signal raises elsewhere
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, handler)
    if not _installed:
        atexit.register(stop_all)
        _installed = True


def wait_any(p, poll=0.1):
    """p.wait() that stays interruptible by signals handled in Python."""
    while p.poll() is None:
        time.sleep(poll)
    return p.returncode
