"""Batch inference over archives: sharded, resumable, on a pool of local processes or on a Ray cluster.

    from soundscene.apps.batch import run_batch, read_table
    result = run_batch("model.safetensors", ["manifest.csv"], "out/", workers=4)
    windows = read_table("out/", "windows").to_pandas()

The parts: :mod:`.plan` (inputs, headers, shards on the hop grid), :mod:`.shards` (the shard function a
worker runs), :mod:`.engines` (local processes, Ray Data), :mod:`.output` (the partitioned Parquet data set),
:mod:`.progress`, :mod:`.run` (claim DIR, plan, resume, finish files, summary).  ``soundscene batch`` is the
command.  pyarrow is needed (``pip install 'soundscene[batch]'``); Ray only for the ray engine
(``soundscene[ray]``).
"""

from .output import read_table
from .progress import Progress
from .run import BatchResult, run_batch

__all__ = ["run_batch", "read_table", "BatchResult", "Progress"]
