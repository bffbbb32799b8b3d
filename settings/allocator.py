"""Polars' memory allocator told to hand freed memory back to the operating system at once.

Polars allocates through its own jemalloc, which by default keeps freed pages for ten seconds before it
returns them: a run's stages then stack, each on the freed-but-kept memory of the ones before it, and a
300k-user sync peaked 150 MB higher than with the pages returned as they are freed (bench/README.md,
"Memory"; the run's CPU time was the same). jemalloc reads its settings once, when polars is first
imported, from `_RJEM_MALLOC_CONF`: so every entry point of the product (the CLI, the flows a worker runs,
the admin API) imports this module before anything that imports polars. An operator's own setting of the
variable is kept.
"""

from __future__ import annotations

import os

POLARS_ALLOCATOR_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"

os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_ALLOCATOR_CONF)
