"""Training from a stream (``data.streaming=True``): a ``datasets.IterableDataset`` of rows, sharded, shuffled, resumable.

A task that can stream gives its training split as :class:`StreamRows`: rows (a ``datasets.Dataset``, turned into
an ``IterableDataset`` with ``to_iterable_dataset(num_shards=...)``, or a ``datasets.IterableDataset`` such as
``load_dataset(..., streaming=True)``) and the per-example function that turns one row into a sample (decoding,
augmentation). Everything else lives here, the same for every task:

* **Sharding across processes** with ``datasets.distributed.split_dataset_by_node``: each process reads its own
  ``num_shards / num_processes`` shards. The stream is *not* handed to ``accelerator.prepare``: Accelerate would
  shard it a second time (``IterableDataset.shard`` on top of ours) or, with its default ``dispatch_batches=True``
  for iterable datasets, read every batch on the main process and broadcast slices. Batches are moved to the device
  with ``accelerate.utils.send_to_device``.
* **Sharding across DataLoader workers** by ``datasets`` itself: inside a worker, its ``IterableDataset`` reads the
  shards ``worker_id, worker_id + num_workers, ...`` of its process.
* **The shard rule**: the number of shards must be a multiple of ``num_processes × max(1, num_workers)``, so every
  process and worker reads whole shards of its own (no example is read by two readers, none is skipped). Map-style
  rows get exactly that many shards by default (``data.num_shards`` sets another multiple); a streaming source has
  the shards its files give it, and a :class:`~polyhead.errors.ConfigError` says what the rule needed otherwise.
* **Shuffling**: ``IterableDataset.shuffle(seed=train.seed, buffer_size=data.shuffle_buffer)`` (the shard order
  and a buffer of that many rows), with ``set_epoch(epoch)`` each epoch: every epoch has another order, and the
  orders repeat for the same seed (and the same processes, workers and shards).
* **Random draws per sample**: the per-example function runs with ``random``, NumPy and torch seeded from
  ``(seed, epoch, process, worker, position)``, so a sample's augmentation does not depend on what ran before it.
  A generator the task keeps itself (MONAI's random transforms hold a ``RandomState`` each) is reseeded there
  too: :meth:`StreamRows.of_indices` takes such objects (``set_random_state(seed=...)``) and reseeds them per sample
  with :func:`sample_seed`.
* **Rows a task drops**: a per-example function that returns ``None`` drops its row (an ASR clip longer than
  ``data.max_seconds``, as the map-style data skips it); the row still takes its place in the stream.
* **Even steps across processes**: processes may hold different numbers of rows, so :class:`StreamingLoader`
  agrees across processes after every batch (one all-reduce of two integers): a process whose share has ended while
  another's has not repeats its last batch with ``real=False``, and the trainer multiplies that batch's loss by zero.
  Every rank runs the same number of micro-batches (DDP's gradient all-reduce needs that), and no sample counts
  twice. The last batch of an epoch ends gradient accumulation (Accelerate's ``end_of_dataloader``).
* **Mid-epoch resume**: the trainer re-iterates the epoch's stream (same seed, same epoch: the same rows in the
  same order, with the same random draws) and skips the batches it had trained on; the weights are bit-identical to
  an uninterrupted run with the same processes (a checkpoint refuses another count) and ``train.num_workers``. The
  skipped batches are read and transformed again (they are not trained on).

Evaluation stays map-style (the task's validation and test splits).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from accelerate.data_loader import DataLoaderStateMixin
from accelerate.state import GradientState
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader

from .errors import ConfigError, DataError

if TYPE_CHECKING:  # `datasets` is imported when a stream is built: `import polyhead` stays fast
    import datasets

__all__ = ["NEEDS_MAX_STEPS", "STREAMING_OPTIONS", "StreamRows", "StreamingData", "StreamingLoader", "StreamingOptions", "TrainStream", "sample_seed", "split_streaming_options"]

#: the data-section keys of streaming, the same for every task
STREAMING_OPTIONS = ("streaming", "shuffle_buffer", "num_shards")
#: the error a stream without train.max_steps gets (from polyhead.workflows.fit before any data is read, and from the Trainer)
NEEDS_MAX_STEPS = "data.streaming=True needs train.max_steps: a stream has no length to count train.epochs by."


@dataclass(frozen=True)
class StreamingOptions:
    """The streaming keys of a config's ``data`` section.

    Attributes:
        shuffle_buffer: rows in the shuffle buffer (``data.shuffle_buffer``, default 1000).
        num_shards: shards of map-style rows (``data.num_shards``); ``None``: ``num_processes × max(1, num_workers)``.
    """

    shuffle_buffer: int = 1000
    num_shards: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.shuffle_buffer, bool) or not isinstance(self.shuffle_buffer, int) or self.shuffle_buffer < 1:
            raise ConfigError(f"data.shuffle_buffer must be a positive integer (rows held for shuffling a stream), got {self.shuffle_buffer!r}.")
        shards = self.num_shards
        if shards is not None and (isinstance(shards, bool) or not isinstance(shards, int) or shards < 1):
            raise ConfigError(f"data.num_shards must be a positive integer or None (one shard per process and worker), got {shards!r}.")


def split_streaming_options(data_section: Mapping[str, Any]) -> tuple[StreamingOptions | None, dict[str, Any]]:
    """``(options, the rest of the section)``: options is ``None`` unless ``data.streaming`` is true.

    Raises:
        ConfigError: ``data.streaming`` that is not true or false; ``shuffle_buffer`` / ``num_shards`` without it,
            or with bad values.
    """
    rest = {k: v for k, v in data_section.items() if k not in STREAMING_OPTIONS}
    enabled = data_section.get("streaming", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"data.streaming must be true or false, got {enabled!r}.")
    given = {k: data_section[k] for k in STREAMING_OPTIONS[1:] if k in data_section}
    if not enabled:
        if given:
            raise ConfigError(f"data.{next(iter(given))} is a streaming option; it needs data.streaming=True.")
        return None, rest
    return StreamingOptions(**given), rest


@dataclass(frozen=True)
class StreamRows:
    """A task's training split as a stream: rows and the per-example function.

    Attributes:
        rows: a ``datasets.Dataset`` (sharded with ``to_iterable_dataset``) or a ``datasets.IterableDataset``.
        transform: one row (a dict) -> one sample, what the task's collate function batches; ``None`` drops the row.
    """

    rows: datasets.Dataset | datasets.IterableDataset
    transform: Callable[[dict[str, Any]], Any]

    @classmethod
    def of_indices(cls, dataset: Any, *, reseeded: Sequence[Any] = ()) -> StreamRows:
        """The stream of a map-style dataset's samples: rows ``{"index": i}``, each read with ``dataset[i]``.

        Args:
            dataset: the map-style samples (``len`` and ``[i]``).
            reseeded: objects with a random generator of their own that ``dataset[i]`` draws from (MONAI
                ``Randomizable`` transforms: ``set_random_state(seed=...)``), reseeded with :func:`sample_seed`
                before each sample: their draws then depend on the sample's place in the stream only.
        """
        import datasets

        return cls(datasets.Dataset.from_dict({"index": np.arange(len(dataset), dtype=np.int64)}), _Indexed(dataset, tuple(reseeded)))


def sample_seed() -> int:
    """A seed for a generator the task keeps itself, drawn from NumPy's global generator.

    Inside a stream's per-example function NumPy is seeded from the sample's place in the stream (see the module
    docstring), so the seed is the sample's own: the same on a resumed run, independent of what ran before.
    """
    return int(np.random.randint(0, 2**31 - 1))


class _Indexed:
    """``row -> dataset[row["index"]]`` (a class, not a lambda: DataLoader workers may need to pickle it)."""

    def __init__(self, dataset: Any, reseeded: tuple[Any, ...] = ()) -> None:
        self.dataset = dataset
        self.reseeded = reseeded

    def __call__(self, row: dict[str, Any]) -> Any:
        for randomizable in self.reseeded:
            randomizable.set_random_state(seed=sample_seed())
        return self.dataset[int(row["index"])]


@dataclass(frozen=True)
class StreamingData:
    """What the trainer gets instead of a map-style training set when the config streams."""

    source: StreamRows
    options: StreamingOptions


@contextlib.contextmanager
def _seeded(*key: int) -> Iterator[None]:
    """``random``, NumPy and torch (CPU) seeded from ``key`` inside, and restored after."""
    seed = int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class TrainStream(torch.utils.data.IterableDataset):
    """One process's share of a task's training rows, shuffled, as samples.

    Args:
        source: the task's :class:`StreamRows`.
        options: :class:`StreamingOptions`.
        seed: ``train.seed``: the shuffle and the per-sample random draws.
        process_index / num_processes: this process and how many train together.
        num_workers: the DataLoader's workers per process (0: the process reads itself).

    Raises:
        ConfigError: rows that are not a ``datasets`` dataset, or a shard count that breaks the rule in the
            module docstring.
    """

    def __init__(self, source: StreamRows, options: StreamingOptions, *, seed: int, process_index: int = 0, num_processes: int = 1, num_workers: int = 0) -> None:
        import datasets
        from datasets.distributed import split_dataset_by_node

        rows = source.rows
        readers = num_processes * max(1, num_workers)
        rule = (f"a multiple of num_processes × max(1, num_workers) = {num_processes} × {max(1, num_workers)} = {readers}, "
                "so that every process and DataLoader worker reads whole shards of its own")
        if isinstance(rows, datasets.Dataset):
            shards = options.num_shards or readers
            if shards % readers:
                raise ConfigError(f"data.num_shards is {shards}; it must be {rule}.")
            if shards > len(rows):
                raise ConfigError(f"data.num_shards is {shards}, but the training split has only {len(rows)} row(s): "
                                  f"every shard needs a row; train with fewer processes or workers.")
            stream = rows.to_iterable_dataset(num_shards=shards)
        elif isinstance(rows, datasets.IterableDataset):
            if options.num_shards is not None:
                raise ConfigError(f"data.num_shards splits map-style rows; this streaming source has its own {rows.num_shards} shard(s) "
                                  "(its files): drop data.num_shards.")
            if rows.num_shards % readers:
                raise ConfigError(f"The streaming source has {rows.num_shards} shard(s); the number must be {rule}. "
                                  "Split the source into more files (or `dataset.reshard()`), or change the processes or train.num_workers.")
            stream = rows
        else:
            raise ConfigError(f"data.streaming=True needs rows as a datasets.Dataset or datasets.IterableDataset; the task gave {type(rows).__name__}.")
        #: what the order of the stream depends on besides the seed: a resumed run must have the same (Trainer checks it)
        self.layout = {"num_workers": int(num_workers), "num_shards": int(stream.num_shards)}
        stream = stream.shuffle(seed=seed, buffer_size=options.shuffle_buffer)
        self.stream = split_dataset_by_node(stream, rank=process_index, world_size=num_processes)
        self.transform = source.transform
        self.seed, self.process_index = int(seed), int(process_index)
        self.epoch = 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (the same epoch gives the same order)."""
        self.epoch = int(epoch)
        self.stream.set_epoch(self.epoch)

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        for position, row in enumerate(self.stream):
            with _seeded(self.seed, self.epoch, self.process_index, worker, position):
                sample = self.transform(row)
            if sample is not None:  # None: a row the task drops (see the module docstring)
                yield sample


class StreamingLoader(DataLoaderStateMixin):
    """Batches of a :class:`TrainStream` on the accelerator's device, the same number on every process.

    Iterating gives ``(batch, real)`` pairs: ``real`` is false for a repeated batch that a process whose share has
    ended runs while another process still has batches (its loss must count zero). The last pair of an epoch is
    marked as the end of the dataloader, so gradient accumulation steps there.

    Args:
        stream: this process's :class:`TrainStream`.
        accelerator: the run's Accelerator (device, process count, the all-reduce).
        batch_size / collate_fn / num_workers: the DataLoader's; ``worker_init_fn``: its per-worker seeding;
        ``multiprocessing_context``: how its workers start (``train.multiprocessing_context``; ``None``: PyTorch's
            default). Workers of another start method than ``fork`` get the stream pickled.
    """

    def __init__(self, stream: TrainStream, accelerator: Any, *, batch_size: int, collate_fn: Callable | None = None, num_workers: int = 0,
                 worker_init_fn: Callable[[int], None] | None = None, multiprocessing_context: str | None = None) -> None:
        self.stream = stream
        self.accelerator = accelerator
        self.gradient_state = GradientState()
        # a generator of its own: starting an epoch's iterator draws the workers' base seed from it, not from torch's
        # global generator (whose state a checkpoint restores: a resumed run re-starts the epoch and must not draw again)
        options: dict[str, Any] = {"num_workers": num_workers, "pin_memory": torch.cuda.is_available(),
                                   "generator": torch.Generator().manual_seed(stream.seed)}
        if num_workers:  # new workers every epoch (not persistent): each gets the stream's current epoch
            options.update(worker_init_fn=worker_init_fn, multiprocessing_context=multiprocessing_context)
        self.loader = DataLoader(stream, batch_size=batch_size, collate_fn=collate_fn, **options)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle the stream for ``epoch``; the workers' base seed depends on the seed and the epoch only."""
        self.stream.set_epoch(epoch)
        self.loader.generator.manual_seed(self.stream.seed * 1_000_003 + int(epoch))

    def __iter__(self) -> Iterator[tuple[Any, bool]]:
        return self.batches()

    def batches(self, skip: int = 0) -> Iterator[tuple[Any, bool]]:
        """The epoch's ``(batch, real)`` pairs after the first ``skip`` (which are read, and dropped)."""
        self.begin()
        try:
            pairs = self._agreed()
            current = next(pairs, None)
            index = 0
            while current is not None:
                following = next(pairs, None)
                if following is None:
                    self.end_of_dataloader = True
                if index >= skip:
                    yield current
                current, index = following, index + 1
        finally:
            self.end()

    def _agreed(self) -> Iterator[tuple[Any, bool]]:
        acc = self.accelerator
        last = None
        for batch in _exhaust(self.loader):
            if acc.num_processes > 1:  # [processes with a batch, processes that can run one]
                flags = torch.tensor([batch is not None, batch is not None or last is not None], device=acc.device, dtype=torch.long)
                alive, ready = (int(v) for v in acc.reduce(flags, reduction="sum").tolist())
            else:
                alive = ready = int(batch is not None)
            if alive == 0:
                return
            if ready < acc.num_processes:
                raise DataError(f"{acc.num_processes - ready} process(es) got no training rows from the stream in epoch {self.stream.epoch}: "
                                "every process needs at least one batch; use fewer processes or more data.")
            if batch is not None:
                last = send_to_device(batch, acc.device, non_blocking=torch.cuda.is_available())
                yield last, True
            else:
                yield last, False


def _exhaust(loader: DataLoader) -> Iterator[Any]:
    """The loader's batches, then ``None`` for ever (a process whose share ended keeps answering the all-reduce)."""
    yield from loader
    while True:
        yield None
