"""``fj.Stream``: training data sent from the host in batches, for data a device cannot hold.

A :class:`Stream` names where each epoch's training batches come from (a callable, a grain
``MapDataset`` of examples the sweep shuffles and batches, or a grain ``IterDataset`` or
``DataLoader`` of batches), and optionally the validation and test batches. The sweep reads
it with :class:`Reader`: the first batch fixes the shapes and dtypes every later batch must
have; ``k`` batches are stacked into a *block* the device scans over in one dispatch (so small
models are not bound by Python), and blocks are put on the devices by a thread that keeps two
ahead of the step that needs them. Nothing here computes: :mod:`flood_jax._sweep.program`'s
``steps_one`` and ``evaluate_batch`` do, driven by :mod:`flood_jax._sweep.streamed`.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import jax
import numpy as np

from flood_jax._dataset import InputSpec

# Bytes of a block of training batches (what one dispatch sends), and its most batches.
BLOCK_BYTES = 16 * 2**20
MAX_BLOCK = 32
# Blocks on their way to the devices ahead of the step that needs them.
AHEAD = 2

_END = object()


def _is_grain(source: Any, name: str) -> bool:
  """Whether ``source`` is a grain ``name`` (without importing grain, an optional extra)."""
  return any(c.__name__ == name and "grain" in c.__module__ for c in type(source).__mro__)


def _describe_source(source: Any) -> str:
  if callable(source) and not hasattr(source, "__iter__"):
    return getattr(source, "__qualname__", None) or type(source).__name__
  return type(source).__name__


class Stream:
  r"""Training (and evaluation) data read in batches from the host: ``fj.sweep``'s data.

  A sweep on a :class:`flood_jax.Dataset` keeps every array on every device; a sweep on a
  ``Stream`` keeps only the models and the batches in flight, so the data may be larger than a
  device or the host's memory, and come from any loader (grain, tf.data, a PyTorch
  ``DataLoader``, files read batch by batch). Every model of the sweep trains on the same
  batches, in the same order (one order shared by every seed, unlike the in-memory sweep, whose
  seeds each shuffle their own), and each model's step is the in-memory sweep's: the flooded
  objective :math:`|J - b| + b` on the batch mean :math:`J`.

  Args:
    train: the training batches of an epoch: a callable ``epoch -> iterable of (x, y)``
      batches (``epoch`` counts from 0; ``x`` an array or a pytree of arrays), or a
      ``grain.MapDataset`` of ``(x, y)`` *examples*, which the sweep shuffles each epoch
      (from ``seed`` and the epoch) and batches by ``fj.sweep``'s ``batch_size`` (the rest of
      an epoch left out), or a ``grain.IterDataset`` or ``grain.DataLoader`` of batches,
      iterated from its start each epoch.
    val, test: the validation and test batches: callables ``() -> iterable of (x, y)`` or
      grain data sets of batches; ``None`` leaves those metrics NaN (and a sweep then selects
      by nothing: give ``val`` to choose a flood level).
    seed: the seed of the epochs' shuffles of a ``MapDataset``.
    name: a label for the stream's description (the result's config and the checkpoint's
      fingerprint); default: the sources' names.

  The first batch fixes the batch size and every batch's shapes and dtypes: a training batch of
  another shape is one error naming the epoch, the step and both shapes (batch the last
  examples out, e.g. ``drop_remainder=True``), an epoch with no batch another. Evaluation
  batches may differ in size; each model's metric is the mean over their examples.

  Examples:
    >>> import numpy as np, optax
    >>> import flax.linen as nn
    >>> import flood_jax as fj
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 2)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> def batches(epoch):
    ...   order = np.random.default_rng(epoch).permutation(64)
    ...   for i in range(0, 64, 16):
    ...     yield x[order[i:i + 16]], y[order[i:i + 16]]
    >>> stream = fj.Stream(train=batches, val=lambda: [(x, y)])
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, train):
    ...     return nn.Dense(2)(nn.relu(nn.Dense(8)(x)))
    >>> result = fj.sweep(Net(), stream, flood_levels=[0.0, 0.1], seeds=[0],
    ...                   optimizer=optax.sgd(0.1), epochs=2, progress=False)
    >>> result.history["val_accuracy"].shape
    (2, 1, 2)
  """

  def __init__(
    self, train: Any, val: Any = None, test: Any = None, *, seed: int = 0, name: str | None = None
  ):
    self.kind = _kind(train, "train")
    self.train = train
    self.val = _check_eval(val, "val")
    self.test = _check_eval(test, "test")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
      raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")
    self.seed = int(seed)
    self.name = name
    self._first: tuple[Any, Any] | None = None
    self._batch_size: int | None = None
    self.steps_per_epoch = 0  # the batches of the last epoch read

  def __repr__(self) -> str:
    parts = [repr(self.name)] if self.name else [f"train={_describe_source(self.train)}"]
    for split in ("val", "test"):
      source = getattr(self, split)
      if source is not None:
        parts.append(f"{split}={_describe_source(source)}")
    if self._first is not None:
      parts.append(f"batch={_shapes(self._first)}")
    return f"Stream({', '.join(parts)})"

  @classmethod
  def from_dataset(cls, data: Any, *, seed: int = 0, eval_batch_size: int = 2048) -> Stream:
    """A :class:`flood_jax.Dataset` as a stream: its training examples as a grain
    ``MapDataset`` (shuffled each epoch, batched by ``fj.sweep``'s ``batch_size``), its
    validation and test sets in batches of ``eval_batch_size``.

    So the built-in sets and the original-file loaders of :mod:`flood_jax.data` stream too:
    ``fj.Stream.from_dataset(fj.data.load("mnist", data_dir=...))`` (``flood-jax sweep
    --stream``). Needs grain (``pip install "flood_jax[streaming]"``).
    """
    try:
      import grain
    except ImportError:
      raise ImportError(
        'a grain source needs grain: pip install "flood_jax[streaming]" (or pip install grain)'
      ) from None
    train = grain.MapDataset.source(_Examples(data.x_train, data.y_train))

    def split(x: Any, y: np.ndarray) -> Callable[[], Iterator[tuple[Any, Any]]]:
      def batches() -> Iterator[tuple[Any, Any]]:
        for i in range(0, len(y), eval_batch_size):
          part = slice(i, i + eval_batch_size)
          yield jax.tree.map(lambda a, part=part: a[part], x), y[part]

      return batches

    return cls(train, split(data.x_val, data.y_val), split(data.x_test, data.y_test), seed=seed,
               name=f"{data.name} ({data.num_train} train examples)")  # fmt: skip

  # -- what the sweep asks before it trains --------------------------------------------

  def bind(self, batch_size: int | None) -> int:
    """Reads the first batch (shapes, dtypes, batch size); returns the batch size."""
    if self.kind == "examples":
      if batch_size is None:
        raise ValueError(
          "a Stream of a grain MapDataset holds examples; pass fj.sweep(..., batch_size=B)"
          " to batch them."
        )
      if batch_size > len(self.train):
        raise ValueError(
          f"batch_size {batch_size} is larger than the stream's MapDataset"
          f" ({len(self.train)} examples); use batch_size <= {len(self.train)}."
        )
    source = _iterable(self._epoch_batches(0, batch_size), "train(0)")
    first = _as_batch(next(iter(source), None), 0, 0)
    if first is None:
      raise ValueError("the stream's first epoch has no batch; give train= at least one batch.")
    size = _batch_size(first)
    if self.kind != "examples" and batch_size is not None and batch_size != size:
      raise ValueError(
        f"batch_size={batch_size} but the stream's batches hold {size} examples; leave"
        " batch_size out (a stream of batches fixes it) or give the batches' size."
      )
    self._first, self._batch_size = first, size
    return size

  @property
  def first_batch(self) -> tuple[Any, Any]:
    assert self._first is not None, "bind() reads it"
    return self._first

  @property
  def input_spec(self) -> InputSpec:
    return InputSpec.of(self.first_batch[0])

  @property
  def target_spec(self) -> InputSpec:
    return InputSpec.of(self.first_batch[1])

  @property
  def num_classes(self) -> int | None:
    return None  # unknown without reading every label

  def checksum(self) -> str:
    """SHA-256 of the first batch and the stream's description (the checkpoint's fingerprint)."""
    digest = hashlib.sha256(repr(self).encode())
    for leaf in jax.tree.leaves(self.first_batch):
      digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()

  # -- the batches -----------------------------------------------------------------------

  def _epoch_batches(self, epoch: int, batch_size: int | None) -> Iterable[Any]:
    if self.kind == "callable":
      return self.train(epoch)
    if self.kind == "examples":
      assert batch_size is not None
      seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0] % 2**31)
      return self.train.shuffle(seed=seed).batch(batch_size, drop_remainder=True)
    return self.train  # an IterDataset or DataLoader: from its start

  def epoch(self, epoch: int, classes: int | None = None) -> Iterator[tuple[Any, Any]]:
    """The training batches of ``epoch`` (from 0), each checked against the first (and, with
    ``classes``, its integer labels against the model's logits)."""
    first = self.first_batch
    count = 0
    source = _iterable(self._epoch_batches(epoch, self._batch_size), f"train({epoch})")
    for count, batch in enumerate(source, start=1):
      batch = _as_batch(batch, epoch, count - 1)
      where = f"training batch {count - 1} of epoch {epoch}"
      _check_like(batch, first, where)
      check_labels(batch[1], classes, where)
      yield batch
    self.steps_per_epoch = count
    if count == 0:
      raise ValueError(
        f"epoch {epoch} of the stream has no batch; train(epoch) must give at least one"
        " batch every epoch."
      )

  def evaluation(self, split: str, classes: int | None = None) -> Iterator[tuple[Any, Any]] | None:
    """The batches of ``split`` (``"val"`` or ``"test"``), or None if it has none."""
    source = getattr(self, split)
    if source is None:
      return None
    called = callable(source) and not hasattr(source, "__iter__")
    batches = _iterable(source() if called else source, f"{split}()")
    first = self.first_batch

    def checked():
      for i, batch in enumerate(batches):
        batch = _as_batch(batch, None, i, split)
        _check_like(batch, first, f"{split} batch {i}", sizes_may_differ=True)
        check_labels(batch[1], classes, f"{split} batch {i}")
        yield batch

    return checked()


class _Examples:
  """Arrays as a grain source: example ``i`` is ``(x[i], y[i])``."""

  def __init__(self, x: Any, y: np.ndarray):
    self.x, self.y = x, y

  def __len__(self) -> int:
    return len(self.y)

  def __getitem__(self, index: Any) -> Any:
    return jax.tree.map(lambda a: a[index], self.x), self.y[index]


def _iterable(batches: Any, what: str) -> Iterable[Any]:
  try:
    iter(batches)
  except TypeError:
    raise TypeError(
      f"{what} must give an iterable of (x, y) batches (a list, a generator, a loader), got"
      f" {type(batches).__name__}."
    ) from None
  return cast(Iterable[Any], batches)


def check_labels(y: np.ndarray, classes: int | None, where: str) -> None:
  """Integer class labels within the model's ``classes`` logits (else the loss reads a label
  outside them as an all-zero target, silently)."""
  if classes is None or y.size == 0 or y.dtype.kind not in "iu":
    return
  low, high = int(y.min()), int(y.max())
  if low < 0 or high >= classes:
    raise ValueError(
      f"{where} has labels in [{low}, {high}] but the model outputs {classes} logits; labels"
      f" must lie in [0, {classes}): give the model's last layer more outputs or fix the labels."
    )


def _kind(train: Any, name: str) -> str:
  if _is_grain(train, "MapDataset"):
    return "examples"
  if _is_grain(train, "IterDataset") or _is_grain(train, "DataLoader"):
    return "batches"
  if callable(train):
    return "callable"
  raise TypeError(
    f"{name} must be a callable epoch -> iterable of (x, y) batches, a grain MapDataset of"
    f" (x, y) examples, or a grain IterDataset/DataLoader of batches; got"
    f" {type(train).__name__}."
  )


def _check_eval(source: Any, name: str) -> Any:
  if source is None or callable(source) or _is_grain(source, "MapDataset"):
    return source
  if _is_grain(source, "IterDataset") or _is_grain(source, "DataLoader"):
    return source
  raise TypeError(
    f"{name} must be a callable () -> iterable of (x, y) batches or a grain data set of"
    f" batches, got {type(source).__name__}."
  )


def _as_batch(batch: Any, epoch: int | None, step: int, split: str = "training") -> Any:
  if batch is None:
    return None
  where = f"{split} batch {step}" + ("" if epoch is None else f" of epoch {epoch}")
  if isinstance(batch, dict) and set(batch) >= {"x", "y"} and len(batch) == 2:
    batch = (batch["x"], batch["y"])
  if not isinstance(batch, (tuple, list)) or len(batch) != 2:
    raise ValueError(
      f"{where} is a {type(batch).__name__}, not an (x, y) pair; give batches as (inputs, targets)."
    )
  x, y = jax.tree.map(host_array, batch[0]), host_array(batch[1])
  leaves = jax.tree.leaves(x)
  if not leaves or any(leaf.ndim == 0 for leaf in leaves) or y.ndim == 0:
    raise ValueError(f"{where} has no batch axis; give arrays of shape (batch, ...).")
  sizes = {leaf.shape[0] for leaf in leaves} | {y.shape[0]}
  if len(sizes) != 1:
    raise ValueError(
      f"{where}: inputs and targets differ in length ({sorted(sizes)}); they must match."
    )
  check_finite((x, y), where)
  return x, y


def check_finite(batch: Any, where: str) -> None:
  """Float inputs and targets are finite (a NaN would train every model into NaN, silently)."""
  for leaf in jax.tree.leaves(batch):
    if leaf.dtype.kind == "f" and not np.all(np.isfinite(leaf)):
      raise ValueError(
        f"{where} holds NaN or infinite values; clean the data (e.g. np.nan_to_num) or drop"
        " those examples."
      )


def host_array(a: Any) -> np.ndarray:
  """``a`` as a NumPy array of the dtype a device holds it in (int64 -> int32, ...)."""
  a = np.asarray(a)
  dtype = jax.dtypes.canonicalize_dtype(a.dtype)
  return a if a.dtype == dtype else a.astype(dtype)


def _batch_size(batch: Any) -> int:
  return int(batch[1].shape[0])


def _shapes(batch: Any) -> str:
  def one(a):
    return f"{a.dtype}{list(a.shape)}"

  x = jax.tree.map(one, batch[0])
  return f"(x={x}, y={one(batch[1])})"


def _check_like(batch: Any, first: Any, where: str, sizes_may_differ: bool = False) -> None:
  def signature(b, drop_size):
    leaves, treedef = jax.tree.flatten(b)
    return treedef, [
      (leaf.shape[1:] if drop_size else leaf.shape, np.dtype(leaf.dtype)) for leaf in leaves
    ]

  if signature(batch, sizes_may_differ) != signature(first, sizes_may_differ):
    raise ValueError(
      f"{where} is {_shapes(batch)} but the first batch was {_shapes(first)}; every batch"
      " must have the first's shapes and dtypes"
      + ("" if sizes_may_differ else " (drop a short last batch: drop_remainder=True)")
      + "."
    )


def block_size(first: Any) -> int:
  """Training batches stacked into one block (one dispatch): up to :data:`BLOCK_BYTES`."""
  nbytes = sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(first))
  return int(max(1, min(MAX_BLOCK, BLOCK_BYTES // max(nbytes, 1))))


def blocks(batches: Iterator[Any], k: int) -> Iterator[tuple[Any, int]]:
  """``(block, count)``: ``k`` batches stacked on a new leading axis, the last block padded
  with copies of its last batch (``count`` says how many are real)."""
  while True:
    group = []
    for batch in batches:
      group.append(batch)
      if len(group) == k:
        break
    if not group:
      return
    count = len(group)
    group += [group[-1]] * (k - count)
    yield jax.tree.map(lambda *a: np.stack(a), *group), count
    if count < k:
      return


def prefetched(items: Iterator[Any], put: Callable[[Any], Any], ahead: int = AHEAD) -> Iterator:
  """``put(item)`` for each item, done by a thread that keeps ``ahead`` items ready.

  The thread reads the host's data and starts the transfer while the devices run the step
  before; an error in it (a loader's, a shape check's) is raised here, in the caller.
  """
  ready: queue.Queue = queue.Queue(maxsize=ahead)
  stop = threading.Event()

  def fill():
    try:
      for item in items:
        if stop.is_set():
          return
        ready.put((put(item[0]), *item[1:]) if isinstance(item, tuple) else put(item))
      ready.put(_END)
    except BaseException as err:  # raised in the caller
      ready.put(_Failed(err))

  thread = threading.Thread(target=fill, daemon=True)
  thread.start()
  try:
    while True:
      item = ready.get()
      if item is _END:
        return
      if isinstance(item, _Failed):
        raise item.err
      yield item
  finally:
    stop.set()
    while thread.is_alive():  # unblock a thread waiting on a full queue
      try:
        ready.get_nowait()
      except queue.Empty:
        thread.join(0.01)


class _Failed:
  def __init__(self, err: BaseException):
    self.err = err
