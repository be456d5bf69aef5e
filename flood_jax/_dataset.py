"""``Dataset``: the train/validation/test arrays a sweep trains and evaluates on."""

from __future__ import annotations

import dataclasses
import mmap
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

SPLITS = ("train", "val", "test")
# Floating dtypes a device holds as given; other floats become float32.
_KEPT_FLOATS = (np.dtype(jnp.bfloat16), np.dtype(np.float16), np.dtype(np.float32))


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """The structure, shapes and dtypes of one example's inputs (hashable, for program caches).

  Attributes:
    treedef: the pytree structure of the inputs (a single array: a leaf).
    shapes: per leaf, the shape of one example (without the leading axis).
    dtypes: per leaf, its dtype.
  """

  treedef: Any
  shapes: tuple[tuple[int, ...], ...]
  dtypes: tuple[np.dtype, ...]

  @classmethod
  def of(cls, x: Any) -> InputSpec:
    """The spec of a batch ``x`` (a pytree of arrays with a common leading axis)."""
    leaves, treedef = jax.tree.flatten(x)
    return cls(
      treedef,
      tuple(tuple(int(d) for d in leaf.shape[1:]) for leaf in leaves),
      tuple(np.dtype(leaf.dtype) for leaf in leaves),
    )

  def batch(self, n: int) -> Any:
    """The inputs of a batch of ``n`` as ``jax.ShapeDtypeStruct`` s (nothing allocated)."""
    leaves = [
      jax.ShapeDtypeStruct((n, *shape), dtype)
      for shape, dtype in zip(self.shapes, self.dtypes, strict=True)
    ]
    return jax.tree.unflatten(self.treedef, leaves)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A supervised data set: inputs and targets for three splits.

  Each ``x_*`` is an array ``(n, *features)`` or any pytree of arrays (a dict,
  a tuple, ...) sharing the leading axis ``n``, for example token ids and
  their attention mask, ``{"ids": (n, L) int32, "mask": (n, L) bool}``. Each
  ``y_*`` is any numeric array ``(n, ...)``: integer class labels ``(n,)``,
  float targets ``(n,)`` or ``(n, d)``, token labels ``(n, L)``. The model
  (and ``augment``) receive the inputs as given: dict in, dict out.

  Dtypes are kept where a device can hold them: integer, uint8 and bool
  inputs stay (int64 becomes int32, uint64 uint32, when the values fit);
  floating inputs become float32, or stay bfloat16/float16 if given so.
  Integer and bool targets become int32, floating targets float32 (or stay
  bfloat16/float16). A float array with 1-D integer labels is stored exactly
  as before tasks: float32 inputs, int32 labels.

  Construction checks the arrays and raises a one-line ``ValueError`` saying
  what is wrong: equal lengths within a split, the same per-example structure,
  shapes and dtypes across splits, finite floats, numeric dtypes.

  The arrays are kept read-only, so a ``Dataset`` never changes (a sweep keeps
  its device copy for the next sweep on the same ``Dataset``): writing into
  ``data.x_train`` raises NumPy's "assignment destination is read-only", and
  changing an array you gave changes nothing here. An array the ``Dataset``
  converted (a dtype changed, a list read) is its own and is only marked
  read-only; one you gave as it is, writable or a view of a writable array, is
  copied first (host memory for one more copy while yours lives). Give
  read-only arrays (``a.flags.writeable = False``, what :func:`flood_jax.data.load`
  returns) to skip the copy.

  Attributes:
    x_train, y_train: training inputs and targets.
    x_val, y_val: validation inputs and targets (for choosing the flood level).
    x_test, y_test: test inputs and targets.
    num_classes: number of classes. Inferred as ``max(label) + 1`` (at least
      2) for 1-D integer labels; ``None`` for other targets unless given
      (integer targets of any shape are then checked to lie in
      ``[0, num_classes)``; float targets take none).
    name: a label for tables and plots.

  Examples:
    >>> import numpy as np
    >>> import flood_jax as fj
    >>> x, y = np.zeros((6, 2)), np.array([0, 1, 0, 1, 0, 1])
    >>> data = fj.Dataset(x_train=x, y_train=y, x_val=x, y_val=y,
    ...                   x_test=x, y_test=y)
    >>> data.num_classes, data.input_shape, data.x_train.dtype
    (2, (2,), dtype('float32'))

    Token ids with a padding mask, and float targets:

    >>> ids = np.ones((6, 5), np.int32)
    >>> tokens = {"ids": ids, "mask": ids > 0}
    >>> data = fj.Dataset(x_train=tokens, y_train=np.linspace(0, 1, 6),
    ...                   x_val=tokens, y_val=np.zeros(6), x_test=tokens, y_test=np.zeros(6))
    >>> data.input_shape, data.x_train["mask"].dtype, data.y_train.dtype, data.num_classes
    ({'ids': (5,), 'mask': (5,)}, dtype('bool'), dtype('float32'), None)
  """

  x_train: Any
  y_train: np.ndarray
  x_val: Any
  y_val: np.ndarray
  x_test: Any
  y_test: np.ndarray
  num_classes: int | None = None
  name: str = "dataset"

  def __post_init__(self) -> None:
    targets = {}
    for split in SPLITS:
      given = [getattr(self, f"x_{split}"), getattr(self, f"y_{split}")]
      x = _frozen(_as_inputs(given[0], f"x_{split}"), given)
      y = _frozen(_as_targets(given[1], f"y_{split}"), given)
      n = _length(x)
      if n != y.shape[0]:
        raise ValueError(
          f"x_{split} has {n} examples but y_{split} has {y.shape[0]}; they must match."
        )
      if n == 0:
        raise ValueError(f"the {split} split is empty; give it examples.")
      object.__setattr__(self, f"x_{split}", x)
      object.__setattr__(self, f"y_{split}", y)
      targets[split] = y
    specs = {s: InputSpec.of(getattr(self, f"x_{s}")) for s in SPLITS}
    if len({spec.treedef for spec in specs.values()}) != 1:
      raise ValueError(
        "inputs differ in structure between splits:"
        f" {', '.join(f'{s}: {specs[s].treedef}' for s in SPLITS)}; give every split the same"
        " keys."
      )
    if len({(spec.shapes, spec.dtypes) for spec in specs.values()}) != 1:
      shapes = {s: _describe(getattr(self, f"x_{s}")) for s in SPLITS}
      raise ValueError(
        f"inputs differ in shape or dtype between splits: {shapes}; every split must"
        " have the same example shape and dtype."
      )
    kinds = {s: (y.shape[1:], y.dtype) for s, y in targets.items()}
    if len(set(kinds.values())) != 1:
      described = {s: f"{(None, *shape)} {dtype}" for s, (shape, dtype) in kinds.items()}
      raise ValueError(
        f"targets differ in shape or dtype between splits: {described}; every split must"
        " have the same kind of target."
      )
    object.__setattr__(self, "num_classes", _num_classes(self.num_classes, targets))

  @property
  def input_spec(self) -> InputSpec:
    """The structure, per-example shapes and dtypes of the inputs."""
    return InputSpec.of(self.x_train)

  @property
  def target_spec(self) -> InputSpec:
    """The per-example shape and dtype of the targets (one leaf)."""
    return InputSpec.of(self.y_train)

  @property
  def input_shape(self) -> Any:
    """Shape of one input example: a tuple, or the inputs' pytree of tuples."""
    return jax.tree.map(lambda x: tuple(x.shape[1:]), self.x_train)

  @property
  def num_train(self) -> int:
    """Number of training examples."""
    return _length(self.x_train)

  def __repr__(self) -> str:
    return (
      f"Dataset(name={self.name!r}, train={self.num_train},"
      f" val={_length(self.x_val)}, test={_length(self.x_test)},"
      f" input_shape={self.input_shape}, num_classes={self.num_classes})"
    )


def _frozen(x: Any, given: list[Any]) -> Any:
  """``x`` with every array read-only, copied first where another could still write to it.

  No copy for an array read-only all the way down (its bases too: a view of a
  read-only array, a JAX array's buffer, what an earlier ``Dataset`` kept), nor for
  one made here (owning its memory and none of the arrays ``given``).
  """
  given_leaves = [leaf for tree in given for leaf in jax.tree.leaves(tree)] + given

  def freeze(a: np.ndarray) -> np.ndarray:
    made_here = a.base is None and not any(a is g for g in given_leaves)
    if not (made_here or _read_only_throughout(a)):
      a = a.copy(order="K")
    a.flags.writeable = False
    return a

  return jax.tree.map(freeze, x)


def _read_only_throughout(a: Any) -> bool:
  """Whether nothing can write to ``a``'s memory: it and its bases read-only, none a mmap."""
  while isinstance(a, np.ndarray):
    if a.flags.writeable:
      return False
    a = a.base
  return not isinstance(a, mmap.mmap)


def _length(x: Any) -> int:
  return int(jax.tree.leaves(x)[0].shape[0])


def _describe(x: Any) -> Any:
  described = jax.tree.map(lambda a: f"{(None, *a.shape[1:])} {a.dtype}", x)
  return described


def _as_inputs(x: Any, name: str) -> Any:
  """The inputs of a split: each leaf a NumPy array of a dtype a device holds."""
  if isinstance(x, (np.ndarray, jax.Array, list)) or not _is_container(x):
    array = np.asarray(x)
    if array.ndim < 2:
      raise ValueError(
        f"{name} must have shape (examples, features...), got {array.shape}; add"
        " a feature axis with x[:, None]."
      )
    return _as_input_leaf(array, name)
  paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(x)
  if not paths_leaves:
    raise ValueError(f"{name} holds no arrays; give an array or a dict/tuple of arrays.")
  leaves = []
  for path, leaf in paths_leaves:
    where = f"{name}{jax.tree_util.keystr(path)}"
    array = np.asarray(leaf)
    if array.ndim < 1:
      raise ValueError(
        f"{where} must have a leading axis of examples, got a scalar; every input"
        " array is (examples, ...)."
      )
    leaves.append(_as_input_leaf(array, where))
  lengths = {leaf.shape[0] for leaf in leaves}
  if len(lengths) != 1:
    described = {
      jax.tree_util.keystr(p): leaf.shape[0]
      for (p, _), leaf in zip(paths_leaves, leaves, strict=True)
    }
    raise ValueError(
      f"the arrays of {name} differ in length: {described}; every input array needs one"
      " row per example."
    )
  return jax.tree.unflatten(treedef, leaves)


def _is_container(x: Any) -> bool:
  """A dict, tuple or other pytree node of arrays (a list is read as one array, as NumPy does)."""
  return isinstance(x, (dict, tuple)) or not jax.tree_util.treedef_is_leaf(jax.tree.structure(x))


def _as_input_leaf(x: np.ndarray, name: str) -> np.ndarray:
  dtype = x.dtype
  if jnp.issubdtype(dtype, jnp.floating):
    x = x if dtype in _KEPT_FLOATS else x.astype(np.float32)
    _check_finite(x, name)
    return x
  if dtype == np.bool_:
    return x
  if jnp.issubdtype(dtype, jnp.integer):
    return _fit_integers(x, name)
  raise ValueError(
    f"{name} must be numeric (integer, bool or floating), got dtype {dtype}; convert it first."
  )


def _fit_integers(x: np.ndarray, name: str) -> np.ndarray:
  """64-bit integers as 32-bit (what a device holds without jax_enable_x64), if they fit."""
  if x.dtype.itemsize <= 4:
    return x
  narrow = np.dtype(np.uint32 if np.issubdtype(x.dtype, np.unsignedinteger) else np.int32)
  info = np.iinfo(narrow)
  if x.size and (x.min() < info.min or x.max() > info.max):
    raise ValueError(
      f"{name} holds integers outside {narrow} (from {x.min()} to {x.max()}), which a"
      " device stores; renumber them (token ids, category codes) to fit."
    )
  return x.astype(narrow)


def _check_finite(x: np.ndarray, name: str) -> None:
  finite = np.isfinite(x.astype(np.float32) if x.dtype == jnp.bfloat16 else x)
  if not np.all(finite):
    bad = int(np.size(x) - np.count_nonzero(finite))
    raise ValueError(f"{name} has {bad} NaN or infinite values; clean or impute them first.")


def _as_targets(y: Any, name: str) -> np.ndarray:
  """A split's targets: int32 for integer and bool ones, float32 (or bf16/f16) for floats."""
  y = np.asarray(y)
  if y.ndim < 1:
    raise ValueError(
      f"{name} must have a leading axis of examples, e.g. class labels (n,), got a scalar."
    )
  if y.dtype == np.bool_:
    return y.astype(np.int32)
  if jnp.issubdtype(y.dtype, jnp.integer):
    # Integer targets are int32 on the device: a larger one would wrap around silently.
    if y.size and (y.min() < -(2**31) or y.max() >= 2**31):
      raise ValueError(
        f"{name} holds labels outside int32 (from {y.min()} to {y.max()}); number"
        " the classes 0 to num_classes - 1."
      )
    return y.astype(np.int32)
  if jnp.issubdtype(y.dtype, jnp.floating):
    y = y if y.dtype in _KEPT_FLOATS else y.astype(np.float32)
    _check_finite(y, name)
    return y
  raise ValueError(
    f"{name} must hold numbers (integer class labels or float targets), got dtype {y.dtype}."
  )


def _num_classes(given: Any, targets: dict[str, np.ndarray]) -> int | None:
  """``num_classes``: given, or inferred for 1-D integer labels; labels checked against it."""
  y_any = targets["train"]
  integer = jnp.issubdtype(y_any.dtype, jnp.integer)
  if given is not None:
    if isinstance(given, bool) or not isinstance(given, (int, np.integer)):
      raise ValueError(f"num_classes must be an integer, got {given!r}.")
    if not integer:
      raise ValueError(
        f"num_classes is for integer class labels, but the targets are {y_any.dtype};"
        " leave num_classes out for real-valued targets."
      )
    if given < 2:
      raise ValueError(f"num_classes must be at least 2, got {given}.")
  elif not integer or y_any.ndim != 1:
    return None
  num_classes = given
  if num_classes is None:
    highest = max(int(y.max()) for y in targets.values())
    num_classes = max(highest + 1, 2)
  for split, y in targets.items():
    if y.min() < 0 or y.max() >= num_classes:
      raise ValueError(
        f"y_{split} has labels in [{y.min()}, {y.max()}] but num_classes"
        f" is {num_classes}; labels must lie in [0, {num_classes})."
      )
  return int(num_classes)
