"""Streaming unpaired loader: HR crops and real-LR crops from WebDataset tar shards, resumable per rank.

Shard lists are expanded and checked by `data.manifest`.

Pipelines. Every DataLoader worker of every rank runs two independent, endless WebDataset pipelines, one per
domain, built explicitly (WebDataset's defaults seed from time and process ids, so they are not reproducible):

    wds.DataPipeline(wds.ResampledShards(shards_of_this_worker, seed=s0, deterministic=True),
                     wds.tarfile_to_samples(handler=<counting>), wds.shuffle(shuffle_buffer, seed=s1))
    -> decode + `augment.random_patch` + (HR) `augment.HrToLr` (per-sample RNG) -> batch

and zips them into unpaired batches `{"hr", "clean_lr", "real_lr"}` (Bx3xHxW; decoded pixels as uint8, a clean LR
computed in torch as float32 in [-1, 1]: `images.batch_to_model`). No `accelerate` here: the trainer moves batches
to its device and must not pass this loader through `accelerator.prepare`, which
would split or broadcast again a stream that is already split by rank.

Splitting. The shard list is split explicitly by rank, then by worker (`shard_assignment`; ranks and workers come
from the constructor, never from the environment: WebDataset's default nodesplitter refuses multi-node runs).
With fewer shards than ranks × workers each worker falls back to its rank's share, and with fewer shards than
ranks to all shards; its stream is still distinct because the seeds differ (resampling with
replacement), so it never hangs and never raises "fewer shards than workers".

Seeds. Each worker stream is a sequence of *segments* of `segment_samples` raw (undecoded) samples. Segment k of
domain d for (rank, logical worker w) uses seeds derived from (seed, d, generation, rank, w, k); the augmentation of
raw sample i of that segment uses its own RNG seeded by (..., k, i). Same seed → same batches, whatever the timing.

Resume (exact). The DataLoader hands out worker batches round-robin, so the position of a rank is: the number of
batches consumed and, per logical worker, (segment, raw offset) of each domain after its last *consumed* batch. Each
batch carries that position from its worker; `state_dict()` returns the position after the last batch yielded to
the caller (prefetched batches are not counted). `load_state_dict()` restarts worker p as logical worker
(p + batches) mod workers, rebuilds each segment from its seeds and fast-forwards the raw offset by reading tar
members without decoding them. Bound: with unchanged seed / ranks / workers / batch size / patch / shard list, a
resumed run yields exactly the batches of an uninterrupted run — 0 samples repeated, 0 skipped; the fast-forward
costs at most `segment_samples + shuffle_buffer` raw member reads per domain per worker. If any of those settings
changed, exact replay is impossible: the loader logs a warning and starts fresh streams under a new `generation`
(statistical resume, as the WebDataset maintainers recommend); nothing is fast-forwarded. Segment boundaries drop
the shuffle buffer (≈ shuffle_buffer / segment_samples extra reads, 6% with the defaults); with resampling there
is no epoch to miss samples from.

Bad data at train time. Unreadable/truncated shards and tar errors (`shard_errors`), undecodable members
(`corrupt`), members smaller than the patch (`too_small`) and samples without an image (`no_image`) are skipped and
counted per domain; `skipped()` aggregates the counts of all workers of this rank. A stream that yields nothing
usable for `MAX_EMPTY_SHARDS` shard draws or `MAX_BAD_SAMPLES` samples in a row raises a RuntimeError naming the
shards (never a silent hang). An empty shard list, missing local shards, or a patch larger than the stored crops
raise before training starts.
"""

from .config import StreamConfig
from .loader import StreamingUnpairedLoader
from .shardlists import shard_assignment, training_shards

__all__ = ["StreamConfig", "StreamingUnpairedLoader", "shard_assignment", "training_shards"]
