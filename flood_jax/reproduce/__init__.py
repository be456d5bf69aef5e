"""Reproducing the flooding paper's findings: tables, paired tests and figures.

Three protocols, each a set of :func:`flood_jax.sweep` calls (all flood levels
and seeds of a setting trained at once):

* :func:`synthetic`: the paper's synthetic experiments (Sec. 4.1): two
  Gaussians, sinusoid and spiral, label noise 0, 0.01, 0.05 and 0.1, the
  paper's MLP (4 hidden layers of 500, BatchNorm), SGD (lr 0.01, momentum 0.9)
  and Adam (lr 0.001), 100 training and 100 validation examples.
* :func:`builtin`: the same analysis on the offline benchmark sets
  (``mnist1d``, ``digits``), with the double descent of the test loss.
* :func:`adaflood`: flooding vs iFlood vs AdaFlood (Bae et al., 2024) on the
  synthetic sets with label noise, each method's level chosen per seed by
  validation, with the cost of AdaFlood's fold models.
* :func:`pbt`: population-based training of the flood level against the
  grid's chosen level and successive halving on the synthetic sets (or
  MNIST-1D), paired over seeds by test accuracy and test loss.
* :func:`benchmark`: the paper's benchmark protocol (Sec. 4.2) on the image
  sets (MNIST family with the MLP, CIFAR/SVHN with a ResNet), with and without
  weight decay, read from their original files (``data_dir=``) or from the
  Hugging Face Hub.

The flood level is chosen **per seed** by that run's validation accuracy, as
an experimenter with one run would: without early stopping at the last
epoch, with early stopping at the epoch of best validation accuracy (and the
test accuracy read at that same epoch). "No flooding" is ``b = 0``, which is
always in the grid. Whether flooding helps is a paired comparison across
seeds (same seed = same initialization and batch order): the mean difference
and a one-sided paired t-test.

One module per protocol (``_synthetic``, ``_builtin``, ``_benchmark``,
``_adaflood``, ``_pbt``; the first three share the run of ``_flooding``),
``_protocol`` for the loop every protocol runs and how it resumes (``--out``
claimed, finished parts kept with their arguments, checkpoints),
``_compare`` for the per-seed choice and the comparison records, ``_tables``
for the tables, ``reproduce.json`` and the figures, ``_setting`` for the
settings and the paper's optimizers. The public names are all here.
"""

from flood_jax.reproduce._adaflood import ADAFLOOD_CPU, adaflood
from flood_jax.reproduce._benchmark import (
  BENCHMARK_CPU,
  BENCHMARK_PAPER,
  BENCHMARK_PRESETS,
  benchmark,
)
from flood_jax.reproduce._builtin import builtin
from flood_jax.reproduce._compare import (
  METHODS,
  PBT_METHODS,
  Comparison,
  MethodsComparison,
  PBTComparison,
  choose_member_per_seed,
  choose_per_seed,
  compare,
  model_epochs,
  never_flooded,
  never_flooded_line,
)
from flood_jax.reproduce._pbt import PBT_CPU, pbt
from flood_jax.reproduce._protocol import claim_out, owner
from flood_jax.reproduce._setting import LoggerFactory, Setting, make_optimizer
from flood_jax.reproduce._synthetic import (
  PRESETS,
  SYNTHETIC_CPU,
  SYNTHETIC_PAPER,
  SYNTHETIC_SETS,
  synthetic,
)
from flood_jax.reproduce._tables import markdown_table, methods_table, pbt_table

__all__ = [
  "ADAFLOOD_CPU",
  "BENCHMARK_CPU",
  "BENCHMARK_PAPER",
  "BENCHMARK_PRESETS",
  "METHODS",
  "PBT_CPU",
  "PBT_METHODS",
  "PRESETS",
  "SYNTHETIC_CPU",
  "SYNTHETIC_PAPER",
  "SYNTHETIC_SETS",
  "Comparison",
  "LoggerFactory",
  "MethodsComparison",
  "PBTComparison",
  "Setting",
  "adaflood",
  "benchmark",
  "builtin",
  "choose_member_per_seed",
  "choose_per_seed",
  "claim_out",
  "compare",
  "make_optimizer",
  "markdown_table",
  "methods_table",
  "model_epochs",
  "never_flooded",
  "never_flooded_line",
  "owner",
  "pbt",
  "pbt_table",
  "synthetic",
]
