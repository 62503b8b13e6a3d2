import sys

from bench.turn.cli import main

sys.exit(main())
