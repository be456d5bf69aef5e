"""What each model of a sweep minimizes: the only module that knows the objectives by name.

An :class:`Objective` says what the grid's first axis is (flood levels, AdaFlood's ``gamma``,
or the fold of a fold model), what per-example input the program reads (AdaFlood's held-out
losses, the fold models' training sets), how a mini-batch's losses become the value
differentiated and its flooded fraction, and which transform precedes the optimizer:

- ``flood`` (Ishida et al., 2020): :math:`|J - b| + b` on the mini-batch mean :math:`J`, as
  ``optax.chain(fj.flood(b), optimizer)`` fed the loss;
- ``iflood`` (Xie et al., 2022): :math:`\\frac{1}{B}\\sum_i (|\\ell_i - b| + b)`;
- ``adaflood`` (Bae et al., 2024): iFlood with the level of example :math:`i` read off its
  held-out loss, :math:`\\theta_i = -\\log((1-\\gamma)e^{-l_i} + \\gamma)`;
- ``heldout``: the fold models of :func:`flood_jax.adaflood_levels`, plain training, each on the
  training set less one fold (built by :meth:`SweepSpec.for_fold_models`, never by name).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flood_jax._loss import adaflood_level, iflooded_loss
from flood_jax._transform import flood

# The objectives a user names in fj.sweep(objective=...).
PUBLIC = ("flood", "iflood", "adaflood")
_FOLDS = "heldout"


@dataclasses.dataclass(frozen=True)
class Objective:
  """One of :data:`PUBLIC`, or the fold models' (:meth:`fold_models`)."""

  name: str

  @classmethod
  def named(cls, name: Any) -> Objective:
    if name not in PUBLIC:
      raise ValueError(f"objective must be one of {PUBLIC}, got {name!r}.")
    return cls(name)

  @classmethod
  def fold_models(cls) -> Objective:
    return cls(_FOLDS)

  @property
  def is_fold_models(self) -> bool:
    return self.name == _FOLDS

  @property
  def level_name(self) -> str:
    """The name of the grid's first axis."""
    return {"adaflood": "gamma", _FOLDS: "fold"}.get(self.name, "flood_level")

  @property
  def reads_example_levels(self) -> bool:
    """Whether the program reads a level per training example (AdaFlood)."""
    return self.name == "adaflood"

  @property
  def has_best(self) -> bool:
    """Whether the sweep names a best configuration (the fold models are no choice)."""
    return not self.is_fold_models

  def fingerprint_key(self) -> str:
    """The checkpoint fingerprint's name for the digest of the per-example input."""
    return "fold_sets_sha256" if self.is_fold_models else "per_example_levels_sha256"

  def per_example_digest(self, per_example: np.ndarray) -> dict[str, str]:
    digest = hashlib.sha256(np.ascontiguousarray(per_example).tobytes()).hexdigest()
    return {self.fingerprint_key(): digest}

  # -- inside the program (traced) ----------------------------------------------

  def transform(
    self, level: jax.Array, optimizer: optax.GradientTransformation
  ) -> optax.GradientTransformationExtraArgs:
    """The chain a model trains with: flooding floods the batch loss before the optimizer."""
    if self.name == "flood":
      return optax.chain(flood(level), optimizer)
    # iFlood floods each example inside the loss; the optimizer sees its gradient.
    return optax.chain(optimizer)

  def example_levels_like(self, batch_size: int) -> jax.ShapeDtypeStruct | None:
    """The abstract per-example levels of a mini-batch (for tracing), if the program reads any."""
    if self.reads_example_levels:
      return jax.ShapeDtypeStruct((batch_size,), jnp.float32)
    return None

  def value(
    self,
    losses: jax.Array,
    level: jax.Array,
    example_levels: jax.Array | None,
    idx: jax.Array | None,
  ) -> tuple[jax.Array, jax.Array]:
    """The value differentiated for a mini-batch's per-example ``losses``, and what flooded."""
    if self.name == "flood":
      value = jnp.mean(losses)
      return value, value < level
    if self.is_fold_models:
      return jnp.mean(losses), jnp.float32(0)
    if self.reads_example_levels:
      assert example_levels is not None and idx is not None  # an AdaFlood program passes them
      level_i = adaflood_level(example_levels[idx], level)
    else:
      level_i = level
    value = iflooded_loss(losses, level_i)
    return value, jnp.mean((losses < level_i).astype(jnp.float32))

  def num_trained(self, x_train: Any, per_example: jax.Array | None) -> int:
    """Training examples a model draws its mini-batches from."""
    if self.is_fold_models:
      assert per_example is not None  # the fold models' training sets are always passed
      return per_example.shape[1]
    return jax.tree.leaves(x_train)[0].shape[0]

  def examples(
    self, batches: jax.Array, per_example: jax.Array | None, levels: jax.Array
  ) -> jax.Array:
    """Mini-batches as training-set rows: a fold model's positions in its own set -> examples."""
    if not self.is_fold_models:
      return batches
    assert per_example is not None  # as above
    return jax.vmap(lambda rows, b: rows[b])(per_example[levels.astype(jnp.int32)], batches)

  def example_levels(self, per_example: jax.Array | None) -> jax.Array | None:
    return per_example if self.reads_example_levels else None
