import signal
import sys


def _sigint(signum, frame):
    """Ctrl-C as KeyboardInterrupt, except where Python would print it as "Exception ignored" and
    carry on: in a weakref callback (importlib's module-lock cleanup, while modules load) or a
    __del__. There it comes back 1 ms later (SIGALRM, this handler) in the next ordinary frame."""
    code = frame.f_code if frame is not None else None
    if code is not None and (code.co_name == "__del__" or
                             (code.co_name == "cb" and code.co_filename.startswith("<frozen importlib"))):
        signal.setitimer(signal.ITIMER_REAL, 0.001)
        return
    raise KeyboardInterrupt


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:     # not where the shell ignores it
    signal.signal(signal.SIGINT, _sigint)
    signal.signal(signal.SIGALRM, _sigint)
try:
    from .cli import main
except KeyboardInterrupt:            # Ctrl-C while Python was still loading the command line
    print("tinyslm: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
