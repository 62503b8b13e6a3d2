import sys

from bench.bargein.cli import main

sys.exit(main())
