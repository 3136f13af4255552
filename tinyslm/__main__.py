import sys

try:
    from .cli import main
except KeyboardInterrupt:            # Ctrl-C while Python was still loading the command line
    print("tinyslm: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
