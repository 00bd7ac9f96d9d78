"""`python -m bench [--mode smoke|quick|full]`: the side-by-side latency and accuracy report."""

import sys

from bench.report import main

sys.exit(main())
