"""``python -m latency``: the latency lab (same as ``xlsr-stream latency``)."""

from .lab import main

raise SystemExit(main())
