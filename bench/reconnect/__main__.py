import sys

from bench.reconnect.cli import main

sys.exit(main())
