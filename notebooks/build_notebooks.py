"""Writes the notebooks in this folder from the Python source below.

The notebooks are generated, not edited by hand, so that their code stays
reviewable as plain Python and the "Open in Colab" links all come from one
place: ``[project.urls] Repository`` in ``pyproject.toml``.

  python notebooks/build_notebooks.py            # write the .ipynb files, no outputs
  python notebooks/build_notebooks.py --execute  # write them, run them full size
                                                 # (FLOOD_JAX_SMALL unset) and
                                                 # keep the outputs
  python notebooks/build_notebooks.py --execute quickstart   # just one
  python notebooks/build_notebooks.py --keep-outputs   # prose edits only: keep
                                                       # the saved outputs

``--execute`` runs each notebook in a fresh ``python3`` kernel of this
interpreter (nbclient) and records the date, the machine and the wall time in
the notebook's "About the outputs" cell (``--note`` adds a word on the machine).

Every notebook reads ``FLOOD_JAX_SMALL=1`` from the environment to shrink its
sizes; ``tests/test_notebooks.py`` runs them that way on a CPU.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import re
import sys
import textwrap
import time

try:
  import tomllib
except ImportError:  # Python 3.10: pytest brings tomli
  import tomli as tomllib

import nbformat
from nbformat import v4

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
NAMES = ("quickstart", "sweep", "double_descent")

# The markdown cell that says where the committed outputs come from; filled in
# by --execute (its id is fixed so the tests can find it).
PROVENANCE_ID = "provenance"


def repository_url() -> str:
  """``[project.urls] Repository`` from pyproject.toml, without a trailing slash."""
  with open(ROOT / "pyproject.toml", "rb") as f:
    return tomllib.load(f)["project"]["urls"]["Repository"].rstrip("/")


def colab_url(name: str, repo: str | None = None) -> str:
  """The Colab link of notebook ``name`` for a GitHub repository URL."""
  repo = repo or repository_url()
  match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(\.git)?", repo)
  if not match:
    raise ValueError(f"the Repository URL in pyproject.toml is not a GitHub URL: {repo}")
  return (f"https://colab.research.google.com/github/{match.group(1)}"
          f"/blob/main/notebooks/{name}.ipynb")


def _badge(name: str) -> str:
  return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
          f"({colab_url(name)})")


def _setup(cpu_devices: bool) -> str:
  """The first code cell: install on Colab, import, print the devices."""
  devices = ""
  if cpu_devices:
    devices = """
        try:  # On a CPU: one XLA device per core, so the sweep shards over the cores.
            jax.config.update("jax_num_cpu_devices", os.cpu_count())  # no effect on GPU/TPU
        except (AttributeError, RuntimeError):  # old JAX, or JAX already started
            pass"""
  return textwrap.dedent(f"""\
        import os, sys, time

        if "google.colab" in sys.modules:  # On Colab: install flood_jax from GitHub.
            import subprocess
            subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                            "git+{repository_url()}"], check=True)

        import jax{devices}
        import flood_jax as fj

        # FLOOD_JAX_SMALL=1 shrinks every size (the tests run the notebook that way).
        SMALL = os.environ.get("FLOOD_JAX_SMALL", "") not in ("", "0")
        PROGRESS = "google.colab" in sys.modules  # progress bars need ipywidgets
        T0 = time.perf_counter()
        print("JAX", jax.__version__, "| devices:", jax.devices())
        print("small run" if SMALL else "full-size run")""")


def _provenance_placeholder() -> str:
  return textwrap.dedent("""\
        **About the outputs.** Not executed yet: run
        `python notebooks/build_notebooks.py --execute` to fill them in.""")


_WALL_TIME = """\
print(f"notebook wall time: {time.perf_counter() - T0:.0f} s on {jax.devices()[0].platform}")"""


# -- quickstart -----------------------------------------------------------------


def quickstart() -> list[tuple[str, str]]:
  return [
      ("md", f"""\
{_badge("quickstart")}

# flood_jax quickstart

*Flooding* (Ishida et al., ICML 2020, [arXiv:2002.08709](https://arxiv.org/abs/2002.08709))
stops the training loss from going to zero. With `J` the mini-batch loss and `b`
a small *flood level*, it trains on

$$\\tilde J(\\theta) = |J(\\theta) - b| + b, \\qquad \\nabla \\tilde J = s\\,\\nabla J,\\quad
s = \\begin{{cases}} +1 & J \\ge b \\\\ -1 & J < b \\end{{cases}}$$

that is, ordinary gradient descent while the loss is above `b` and gradient *ascent*
when it is below. The training loss then floats around `b` instead of reaching zero.

This notebook shows the pieces of `flood_jax`: the flooded loss, the Optax
transform `fj.flood(b)` (alone and composed with AdamW and gradient clipping), the
flooded fraction kept in its state, and the Flax linen and NNX training loops."""),
      ("provenance", _provenance_placeholder()),
      ("code", _setup(cpu_devices=False)),
      ("md", """\
## 1. The flooded loss

`fj.flooded_loss(J, b)` is `|J - b| + b`: unchanged above `b`, reflected upward
below it. Its derivative with respect to `J` is `+1` above `b` and `-1` below,
so the gradient of the network's parameters flips sign below the flood level."""),
      ("code", """\
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

plt.rcParams["figure.dpi"] = 80

b = 0.1
dflood = jax.grad(fj.flooded_loss)  # d(flooded loss) / dJ
for J in [0.3, 0.1, 0.05, 0.0]:
    J = jnp.float32(J)
    print(f"J = {float(J):.2f}   flooded = {float(fj.flooded_loss(J, b)):.2f}"
          f"   d flooded / dJ = {float(dflood(J, b)):+.0f}")

J = np.linspace(0, 0.4, 201)
plt.figure(figsize=(4, 3))
plt.plot(J, J, "--", color="gray", label="J")
plt.plot(J, np.asarray(fj.flooded_loss(jnp.asarray(J), b)), label=f"|J - b| + b,  b = {b}")
plt.xlabel("mini-batch loss J"); plt.ylabel("training objective"); plt.legend()
plt.tight_layout(); plt.show()"""),
      ("md", """\
## 2. The `flood` transform on a small problem

Rather than changing the loss function, put `fj.flood(b)` **first** in an Optax
chain and pass the mini-batch loss to `update` as `value=` (Optax's own name for
it). `optax.chain(fj.flood(b), opt)` then trains exactly as `opt` on the flooded
loss.

The problem: the paper's two-Gaussians data (10 dimensions, class 0 around 0,
class 1 around 1) with 10% of the training labels flipped, 200 training examples,
and a small MLP (two hidden layers of 100 units, no BatchNorm). A plain training
loop, jitted per step:"""),
      ("code", """\
from flood_jax import data, models

ds = data.load("two_gaussians", label_noise=0.1, n_train=200, n_val=200, n_test=2000)
model = models.MLP(num_classes=2, hidden=100, depth=2, batch_norm=False)
EPOCHS = 15 if SMALL else 200
BATCH = 20
print(ds)


def mean_loss(params, x, y):
    logits = model.apply({"params": params}, x, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@jax.jit
def evaluate(params):
    accuracy = lambda x, y: jnp.mean(model.apply({"params": params}, x, train=False).argmax(-1) == y)
    return (mean_loss(params, ds.x_train, ds.y_train), mean_loss(params, ds.x_test, ds.y_test),
            accuracy(ds.x_test, ds.y_test))


def train(tx, epochs=EPOCHS, seed=0):
    \"\"\"Trains `model` with optimizer `tx`; returns params, optimizer state, curves.\"\"\"
    params = model.init(jax.random.key(seed), ds.x_train[:1], train=False)["params"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(mean_loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)  # <- the loss
        return optax.apply_updates(params, updates), opt_state

    rng = np.random.default_rng(seed)
    curves = []
    for epoch in range(epochs):
        order = rng.permutation(len(ds.y_train))
        for i in range(0, len(order) - BATCH + 1, BATCH):
            batch = order[i:i + BATCH]
            params, opt_state = step(params, opt_state, ds.x_train[batch], ds.y_train[batch])
        curves.append([float(v) for v in evaluate(params)])
    return params, opt_state, np.array(curves)  # columns: train loss, test loss, test accuracy"""),
      ("md", """\
Train the same network (same initialization, same batches) without flooding
(`b = 0`, where `flood` never fires) and with two flood levels:"""),
      ("code", """\
runs = {}
for b in [0.0, 0.1, 0.3]:
    tx = optax.chain(fj.flood(b), optax.adam(1e-3))
    params, opt_state, curves = train(tx)
    runs[b] = curves
    print(f"b = {b:.1f}: final train loss {curves[-1, 0]:.4f}, test loss {curves[-1, 1]:.3f},"
          f" test accuracy {curves[-1, 2]:.3f}, flooded fraction {float(fj.flooded_fraction(opt_state)):.2f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
for (b, curves), color in zip(runs.items(), ["C0", "C1", "C2"]):
    epochs = np.arange(1, len(curves) + 1)
    ax1.plot(epochs, curves[:, 0], color=color, label=f"b = {b}")
    if b > 0:
        ax1.axhline(b, color=color, ls=":", lw=1)
    ax2.plot(epochs, curves[:, 1], color=color, label=f"b = {b}")
ax1.set(yscale="log", xlabel="epoch", ylabel="cross-entropy", title="training loss (dotted: b)")
ax2.set(yscale="log", xlabel="epoch", title="test loss")
ax1.legend(); plt.tight_layout(); plt.show()"""),
      ("md", """\
Without flooding the training loss heads to zero: the network memorizes the
flipped labels and its test loss climbs. With flooding the training loss stops
at the dotted line `b` and stays there (the training loss plotted is measured on
the whole training set after each epoch, so it sits near, not exactly at, `b`),
and the test loss stays far lower. (On this small problem the test *accuracy*
barely moves; the [sweep notebook](sweep.ipynb) looks at accuracy across many
levels and seeds.) The *flooded fraction* is the share of steps that
were ascent steps: zero without flooding, around a half once the loss floats at
`b`.

## 3. Composing with AdamW and gradient clipping

`flood` is an ordinary Optax transformation, so it composes with anything. It
must come **first**, on the raw gradient: after a stateful transform such as
`optax.adam` it would flip Adam's step instead of the gradient Adam sees, which
is a different method. Clipping by global norm does not change signs, so it may
go on either side; here it follows `flood`:"""),
      ("code", """\
tx = optax.chain(
    fj.flood(0.1),                       # flip the gradient below the flood level
    optax.clip_by_global_norm(1.0),      # then clip
    optax.adamw(1e-3, weight_decay=1e-4),
)
params, opt_state, curves = train(tx)
print(f"final train loss {curves[-1, 0]:.4f}, test accuracy {curves[-1, 2]:.3f}")
print("flooded fraction:", float(fj.flooded_fraction(opt_state)))
print("flood state:", opt_state[0])"""),
      ("md", """\
`fj.flooded_fraction(opt_state)` finds the `FloodState` anywhere inside an
optimizer state (a chain, `optax.inject_hyperparams`, ...) and returns
`flooded_count / count`. The flood level may also be a traced array (for `vmap`
over levels) or an Optax schedule `step -> level`.

## 4. Flax linen: `FloodTrainState`

Linen's `TrainState.apply_gradients` does not pass extra arguments to
`tx.update`, so the loss would never reach `flood`. `fj.FloodTrainState` does,
and carries the `batch_stats` of BatchNorm models. Here the paper's kind of MLP,
with BatchNorm:"""),
      ("code", """\
bn_model = models.MLP(num_classes=2, hidden=100, depth=2)  # with BatchNorm
variables = bn_model.init(jax.random.key(0), ds.x_train[:1], train=False)
state = fj.FloodTrainState.create(
    apply_fn=bn_model.apply,
    params=variables,  # {"params", "batch_stats"}: split into the two fields
    tx=optax.chain(fj.flood(0.1), optax.sgd(0.05, momentum=0.9)),
)


@jax.jit
def train_step(state, x, y):
    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats}, x, train=True,
            mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads, value=loss, batch_stats=batch_stats), loss


rng = np.random.default_rng(0)
for epoch in range(EPOCHS):
    order = rng.permutation(len(ds.y_train))
    for i in range(0, len(order) - BATCH + 1, BATCH):
        batch = order[i:i + BATCH]
        state, loss = train_step(state, ds.x_train[batch], ds.y_train[batch])

logits = bn_model.apply({"params": state.params, "batch_stats": state.batch_stats},
                        ds.x_train, train=False)
train_loss = optax.softmax_cross_entropy_with_integer_labels(logits, ds.y_train).mean()
print(f"steps {int(state.step)}, last batch loss {float(loss):.3f}, "
      f"train loss (eval mode) {float(train_loss):.3f}, "
      f"flooded fraction {float(fj.flooded_fraction(state.opt_state)):.2f}")"""),
      ("md", """\
## 5. Flax NNX

NNX's `nnx.Optimizer.update` forwards keyword arguments to `tx.update` already,
so `value=loss` is all it takes:"""),
      ("code", """\
from flax import nnx


class Net(nnx.Module):
    def __init__(self, din, dout, rngs):
        self.hidden1 = nnx.Linear(din, 100, rngs=rngs)
        self.hidden2 = nnx.Linear(100, 100, rngs=rngs)
        self.out = nnx.Linear(100, dout, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden2(nnx.relu(self.hidden1(x)))))


net = Net(ds.x_train.shape[1], 2, nnx.Rngs(0))
optimizer = nnx.Optimizer(net, optax.chain(fj.flood(0.1), optax.adam(1e-3)), wrt=nnx.Param)


@nnx.jit
def nnx_step(net, optimizer, x, y):
    def loss_fn(net):
        return optax.softmax_cross_entropy_with_integer_labels(net(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(net)
    optimizer.update(net, grads, value=loss)
    return loss


rng = np.random.default_rng(0)
for epoch in range(EPOCHS):
    order = rng.permutation(len(ds.y_train))
    for i in range(0, len(order) - BATCH + 1, BATCH):
        batch = order[i:i + BATCH]
        loss = nnx_step(net, optimizer, ds.x_train[batch], ds.y_train[batch])

train_loss = optax.softmax_cross_entropy_with_integer_labels(net(ds.x_train), ds.y_train).mean()
test_acc = jnp.mean(net(ds.x_test).argmax(-1) == ds.y_test)
print(f"train loss {float(train_loss):.3f}, test accuracy {float(test_acc):.3f}, "
      f"flooded fraction {float(fj.flooded_fraction(optimizer.opt_state)):.2f}")"""),
      ("md", """\
## Next

* [sweep.ipynb](sweep.ipynb): pick `b` by training dozens of flood levels and
  seeds at once with `fj.sweep`, sharded over all devices.
* [double_descent.ipynb](double_descent.ipynb): the paper's epoch-wise double
  descent of the test loss on MNIST-1D, and how flat the minima are."""),
      ("code", _WALL_TIME),
  ]


# -- sweep ----------------------------------------------------------------------------


def sweep() -> list[tuple[str, str]]:
  return [
      ("md", f"""\
{_badge("sweep")}

# Choosing the flood level with `fj.sweep`

Flooding has one hyperparameter, the flood level `b`, and the paper chooses it
from a grid by validation accuracy. `fj.sweep` trains the whole grid, flood
levels times seeds, as **one compiled program**: a model's whole run (shuffling,
mini-batch steps, evaluation after every epoch) is a `lax.scan`, `jax.vmap` runs
a chunk of models side by side with the data shared, and the chunks are sharded
over all the devices JAX sees (`jax.devices()`), so on a Colab TPU runtime the
8 cores each train their own share of the models. A sweep larger than memory
runs in several calls of the same program."""),
      ("provenance", _provenance_placeholder()),
      ("code", _setup(cpu_devices=True)),
      ("md", """\
## The problem and the grid

The paper's two-Gaussians data (10 dimensions, 200 training and 200 validation
examples, 10% of their labels flipped; a clean test set of 2000), the MLP with
BatchNorm (two hidden layers of 100 units here, to stay quick on a CPU), Adam
with learning rate 0.001, mini-batches of 20. Flood levels from 0 (no flooding)
up in steps of 0.02, and several seeds: a seed fixes the initialization and the
order of mini-batches, so all levels of a seed are paired."""),
      ("code", """\
import numpy as np
import optax
from flood_jax import data, models

if SMALL:
    N_LEVELS, SEEDS, EPOCHS = 3, [0], 5
else:
    N_LEVELS, SEEDS, EPOCHS = 32, [0, 1, 2], 200

ds = data.load("two_gaussians", label_noise=0.1, n_train=200, n_val=200, n_test=2000)
model = models.MLP(num_classes=2, hidden=100, depth=2)
optimizer = optax.adam(1e-3)
levels = np.round(0.02 * np.arange(N_LEVELS), 2)
print(ds)
print(f"{len(levels)} levels x {len(SEEDS)} seeds = {len(levels) * len(SEEDS)} models,"
      f" {EPOCHS} epochs each; levels: {levels.tolist()}")"""),
      ("md", """\
## One call

`fj.sweep` puts `fj.flood(b)` in front of the optimizer for each model. It
shards over all devices by default (pass `mesh=` for a subset) and picks how
many models each device trains at once (`chunk_size=`) from the model's size
and the platform: a few per core on a CPU, many on an accelerator."""),
      ("code", """\
result = fj.sweep(model, ds, flood_levels=levels, seeds=SEEDS, optimizer=optimizer,
                  epochs=EPOCHS, batch_size=20, progress=PROGRESS)
print(result)
print("devices:", result.config["devices"], "| platform:", result.config["platform"],
      "| chunk size (models per device per call):", result.config["chunk_size"])
print("history shapes:", {k: v.shape for k, v in result.history.items()})
print(f"wall time {result.wall_time:.1f} s, including compilation")"""),
      ("md", """\
## The table

One row per level: mean ± standard deviation over the seeds of the final
validation accuracy, the best validation accuracy over epochs, the final test
accuracy, the test accuracy at the epoch of best validation accuracy (early
stopping), the final (unflooded) training loss, the final test loss and the last
epoch's flooded fraction. `*` marks the best level."""),
      ("code", "print(result.summary())"),
      ("md", """\
## The best level

`result.best_flood_level` maximizes the final validation accuracy averaged over
seeds; `result.best("best_val")` uses each run's best epoch instead (early
stopping). The test set plays no part in the choice."""),
      ("code", """\
best = result.best_flood_level
i_best = int(np.flatnonzero(result.flood_levels == best)[0])
final_test = result.history["test_accuracy"][..., -1].mean(axis=1)  # mean over seeds
final_test_loss = result.history["test_loss"][..., -1].mean(axis=1)
print(f"best level by validation: b = {best:.2f}"
      f" (by early stopping: b = {result.best('best_val'):.2f})")
print(f"test accuracy: {final_test[0]:.4f} without flooding, {final_test[i_best]:.4f} at b = {best:.2f}")
print(f"test loss:     {final_test_loss[0]:.4f} without flooding, {final_test_loss[i_best]:.4f} at b = {best:.2f}")"""),
      ("md", """\
## Plots

`flood_jax.plots` writes PNGs: the curves (training loss with each level as a
dotted line, and test loss) for a few levels, and the final accuracy against the
flood level."""),
      ("code", """\
import tempfile
from IPython.display import Image, display
from flood_jax import plots

figures = tempfile.mkdtemp()
show = sorted({0.0, best, float(levels[len(levels) // 2]), float(levels[-1])})
display(Image(filename=plots.plot_curves(result, f"{figures}/curves.png", levels=show)))
display(Image(filename=plots.plot_accuracy_vs_level(result, f"{figures}/accuracy.png")))"""),
      ("md", """\
## How the time grows with the number of models

The sweep's point is that `K` models cost much less than `K` single runs. Below,
sweeps of `K` models of the same network for a fixed number of epochs. Each `K`
is run twice: the first call compiles the program, the second reuses it (the
compiled program is cached for the same model and optimizer objects), so its
time is the training alone. On a CPU the devices are the cores, which share
their memory bandwidth; on a GPU or TPU, small models leave most of the chip
idle, so the time per model keeps falling over a wide range of `K`."""),
      ("code", """\
import matplotlib.pyplot as plt

plt.rcParams["figure.dpi"] = 80
KS = [1, 4] if SMALL else [1, 4, 16, 64]
T_EPOCHS = 3 if SMALL else 40
timings = []
for K in KS:
    kwargs = dict(flood_levels=np.linspace(0.0, 0.3, K), seeds=[0], optimizer=optimizer,
                  epochs=T_EPOCHS, batch_size=20, progress=False)
    start = time.perf_counter()
    fj.sweep(model, ds, **kwargs)              # compiles, then trains
    first = time.perf_counter() - start
    timed = fj.sweep(model, ds, **kwargs)      # the same program again: training only
    timings.append((K, first - timed.wall_time, timed.wall_time))
    print(f"K = {K:3d}: {timed.config['devices']} device(s) x chunk {timed.config['chunk_size']:2d};"
          f" compile ~{first - timed.wall_time:5.1f} s, train {timed.wall_time:6.2f} s,"
          f" {1000 * timed.wall_time / (K * T_EPOCHS):6.2f} ms per model-epoch")

K, compile_s, train_s = map(np.array, zip(*timings))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
ax1.plot(K, train_s, "o-", label="training")
ax1.plot(K, compile_s, "s--", label="compilation (first call)")
ax1.set(xscale="log", yscale="log", xlabel="models in the sweep K", ylabel="seconds",
        title=f"wall time, {T_EPOCHS} epochs")
ax1.legend()
ax2.plot(K, 1000 * train_s / (K * T_EPOCHS), "o-")
ax2.set(xscale="log", xlabel="models in the sweep K", ylabel="ms per model-epoch",
        title="training time per model")
ax2.set_ylim(bottom=0)
for ax in (ax1, ax2):
    ax.set_xticks(K, [str(k) for k in K]); ax.grid(alpha=0.3)
plt.tight_layout(); plt.show()"""),
      ("results", ""),
      ("md", """\
## Notes

* On a CPU, `fj.sweep` shards over XLA's CPU devices; this notebook asks for one
  per core at the top (`jax.config.update("jax_num_cpu_devices", ...)`, which
  must come before JAX starts). On a GPU or TPU runtime nothing needs setting.
* With a fixed `chunk_size` (and device count) a model's numbers do not depend on
  what else is in the sweep; between layouts they agree to round-off at first,
  and flooding's sign flip can turn a round-off difference into a different step.
* `checkpoint_dir=` saves the sweep with Orbax as it goes and resumes it; the
  command line `flood-jax sweep` runs the same engine and writes the table,
  curves and plots to a folder."""),
      ("code", _WALL_TIME),
  ]


# -- double descent -----------------------------------------------------------------


def double_descent() -> list[tuple[str, str]]:
  return [
      ("md", f"""\
{_badge("double_descent")}

# Flooding and the double descent of the test loss

**What the paper claims.** Ishida et al. (ICML 2020,
[arXiv:2002.08709](https://arxiv.org/abs/2002.08709)) observe that once a network
reaches zero training *error*, pushing the training *loss* to zero makes it
over-confident: the test loss rises. With flooding, the model "will continue to
'random walk' with the same non-zero training loss, and we expect it to drift into
an area with a flat loss landscape that leads to better generalization", and
"flooding improves performance and, as a byproduct, induces a double descent
curve of the test loss" (abstract; the paper's first figure shows it on
CIFAR-10): the test loss goes down, up, and down again.

**What this notebook does.** It trains the paper's MLP (500 units wide, with
BatchNorm; two hidden layers here) on MNIST-1D (Greydanus, 2020: 10 classes of
1-D signals of length 40, generated locally: 3000 training, 1000 validation, 1000
test examples) with and without flooding, plots the test loss per epoch, and
measures the flatness of the minima reached: the largest eigenvalue of the
Hessian of the training loss at the final parameters."""),
      ("provenance", _provenance_placeholder()),
      ("code", _setup(cpu_devices=True)),
      ("md", """\
## Training: a few flood levels, paired by seed

One `fj.sweep` call trains every (level, seed) pair at once; a seed fixes the
initialization and the order of mini-batches, so the runs at different levels
differ only in the flood level. SGD with momentum 0.9 and learning rate 0.1,
mini-batches of 100."""),
      ("code", """\
import numpy as np
import optax
from flood_jax import data, models

if SMALL:
    ds = data.load("mnist1d", n_train=400, n_val=200)
    model = models.MLP(num_classes=10, hidden=32, depth=2)
    LEVELS, SEEDS, EPOCHS = [0.0, 0.1], [0], 4
else:
    ds = data.load("mnist1d")
    model = models.MLP(num_classes=10, hidden=500, depth=2)
    LEVELS, SEEDS, EPOCHS = [0.0, 0.05, 0.1], [0, 1], 150

print(ds)
result = fj.sweep(model, ds, flood_levels=LEVELS, seeds=SEEDS,
                  optimizer=optax.sgd(0.1, momentum=0.9),
                  epochs=EPOCHS, batch_size=100, progress=PROGRESS)
print(result, f"| {result.config['devices']} device(s), chunk {result.config['chunk_size']},"
      f" {result.wall_time:.0f} s")
print(result.summary())"""),
      ("md", """\
## The test loss per epoch

Left: the training loss on the whole training set (not flooded; dotted lines mark
each `b`). Right: the test loss. Curves are means over seeds with a band of one
standard deviation."""),
      ("code", """\
import tempfile
from IPython.display import Image, display
from flood_jax import plots

figures = tempfile.mkdtemp()
display(Image(filename=plots.plot_curves(
    result, f"{figures}/curves.png", levels=LEVELS,
    title=f"MNIST-1D, MLP 500 wide, {len(SEEDS)} seed(s): loss per epoch")))"""),
      ("md", """\
The shape of each test-loss curve in numbers: where it reaches its first
minimum, how high it climbs after that, and where it ends (means over seeds)."""),
      ("code", """\
test_loss = result.history["test_loss"].mean(axis=1)  # (levels, epochs)
test_acc = result.history["test_accuracy"].mean(axis=1)
train_loss = result.history["train_loss"].mean(axis=1)
print(f"{'b':>5} {'min test loss (epoch)':>22} {'peak after it (epoch)':>22}"
      f" {'final test loss':>16} {'final test acc':>15} {'final train loss':>17}")
for i, b in enumerate(result.flood_levels):
    curve = test_loss[i]
    first_min = int(np.argmax(curve[1:] > curve[:-1])) if np.any(curve[1:] > curve[:-1]) else len(curve) - 1
    peak = first_min + int(np.argmax(curve[first_min:]))
    print(f"{b:5.2f} {curve[first_min]:15.3f} ({first_min + 1:3d}) {curve[peak]:15.3f} ({peak + 1:3d})"
          f" {curve[-1]:16.3f} {test_acc[i, -1]:15.3f} {train_loss[i, -1]:17.4f}")"""),
      ("md", """\
## How flat are the minima?

The sharpness of a minimum is measured here by the largest eigenvalue
$\\lambda_{\\max}$ of the Hessian of the training loss (the mean cross-entropy on
the whole training set, BatchNorm in evaluation mode with the running
statistics) at each run's final parameters `result.final_params[level, seed]`.
It is found by power iteration: a Hessian-vector product is `jax.jvp` of
`jax.grad`, so the Hessian (about 280 000 parameters squared here) is never
formed. A quick check first, on a quadratic whose Hessian eigenvalues are known:"""),
      ("code", """\
import functools
import jax.numpy as jnp


def tree_dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def normalized(tree):
    norm = jnp.sqrt(tree_dot(tree, tree))
    return jax.tree.map(lambda x: x / norm, tree)


@functools.partial(jax.jit, static_argnums=(0, 3))
def top_hessian_eigenvalue(loss, params, key, iterations, *args):
    \"\"\"Estimates, one per iteration, of the largest-magnitude eigenvalue of the
    Hessian of `loss(params, *args)` with respect to `params`.\"\"\"
    gradient = jax.grad(lambda p: loss(p, *args))
    hvp = lambda v: jax.jvp(gradient, (params,), (v,))[1]  # Hessian-vector product
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    v = normalized(jax.tree.unflatten(
        treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]))

    def step(v, _):
        hv = hvp(v)
        return normalized(hv), tree_dot(v, hv)  # Rayleigh quotient of the current v

    _, estimates = jax.lax.scan(step, v, None, length=iterations)
    return estimates


A = jnp.diag(jnp.array([5.0, 2.0, 1.0, 0.5]))
quadratic = lambda p: 0.5 * p["w"] @ A @ p["w"]
print("quadratic, largest eigenvalue 5:",
      float(top_hessian_eigenvalue(quadratic, {"w": jnp.ones(4)}, jax.random.key(0), 50)[-1]))"""),
      ("code", """\
ITERATIONS = 5 if SMALL else 40
x_train, y_train = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
sharpness = np.zeros((len(LEVELS), len(SEEDS)))
final_loss = np.zeros((len(LEVELS), len(SEEDS)))


def training_loss(params, batch_stats):
    \"\"\"Mean cross-entropy on the whole training set, BatchNorm in evaluation mode.\"\"\"
    logits = model.apply({"params": params, "batch_stats": batch_stats}, x_train, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y_train).mean()


for i, b in enumerate(LEVELS):
    for s, seed in enumerate(SEEDS):
        params = jax.tree.map(lambda a: a[i, s], result.final_params)
        batch_stats = jax.tree.map(lambda a: a[i, s], result.final_batch_stats)
        estimates = top_hessian_eigenvalue(training_loss, params, jax.random.key(seed),
                                           ITERATIONS, batch_stats)
        sharpness[i, s] = float(estimates[-1])
        final_loss[i, s] = float(training_loss(params, batch_stats))
        change = abs(float(estimates[-1] - estimates[-2])) / abs(float(estimates[-1]))
        print(f"b = {b:.2f}, seed {seed}: lambda_max = {sharpness[i, s]:8.4f}"
              f"   (training loss {final_loss[i, s]:.4f};"
              f" the last iteration changed it by {100 * change:.2f}%)")"""),
      ("code", """\
import matplotlib.pyplot as plt

plt.rcParams["figure.dpi"] = 80
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
positions = np.arange(len(LEVELS))
width = 0.8 / len(SEEDS)
for s, seed in enumerate(SEEDS):
    ax1.bar(positions + (s - (len(SEEDS) - 1) / 2) * width, sharpness[:, s], width,
            label=f"seed {seed}")
ax1.set_xticks(positions, [f"b = {b:g}" + (" (none)" if b == 0 else "") for b in LEVELS])
ax1.set(yscale="log", ylabel="largest Hessian eigenvalue",
        title="sharpness of the final parameters")
ax1.legend()
for i, b in enumerate(LEVELS):
    ax2.plot(final_loss[i], sharpness[i], "o", ms=7, label=f"b = {b:g}")
ax2.set(xscale="log", yscale="log", xlabel="training loss at the final parameters",
        ylabel="largest Hessian eigenvalue", title="sharpness against the loss reached")
ax2.grid(alpha=0.3, which="both")
ax2.legend(); plt.tight_layout(); plt.show()"""),
      ("results", ""),
      ("code", _WALL_TIME),
  ]


# -- the conclusions of the committed run -----------------------------------------
# Prose about the numbers of the full-size run kept in the repository, written
# after looking at them (the small test run does not reproduce them).

RESULTS: dict[str, str] = {
    "sweep": """\
* **Speed.** The 96 models (32 levels x 3 seeds, 200 epochs each) trained in
  35 s, compilation included, on the 2 CPU devices with 16 models per device
  per call (3 calls of one compiled program). In the timing study the training
  time per model-epoch fell from 2.8 ms for one model alone (on one core) to
  0.83 ms per model with 64 models; compiling took 5 to 8 s per sweep shape.
* **Loss.** Without flooding the training loss reaches 0.0008 and the test loss
  climbs to 0.60 by epoch 200; with `b` between 0.04 and 0.3 the test loss ends
  between 0.33 and 0.39. Levels above about 0.5 (chance level is ln 2 = 0.69)
  hold the network in an underfit state, and its accuracy falls.
* **Accuracy.** The validation accuracy picks `b = 0.22`: final validation
  accuracy 0.817 against 0.773 without flooding. Its final test accuracy is
  0.852 against 0.842, a gain about the size of the spread between seeds
  (around 0.01); most levels from 0.02 to 0.5 end between 0.84 and 0.865 on the
  test set. The validation set is small (200 examples, 10% of them with flipped
  labels), so the choice is noisy: the early-stopping rule picks 0.14.
* **Early stopping.** On this problem stopping early does better than any flood
  level at the last epoch: the unflooded models, read at their epoch of best
  validation accuracy, reach 0.918 test accuracy. Flooding keeps the final model
  from degrading (its test loss stays low), but it does not beat stopping early
  here.""",
    "double_descent": """\
* **The double descent of the test loss: reproduced.** The three levels share
  one trajectory (same seeds, and flooding does nothing while the loss is above
  `b`) until the training loss first reaches `b`: the test loss falls to 1.17 at
  epoch 5, then rises as the network starts to memorize. Without flooding the
  training loss keeps falling, to about 1e-4, and the test loss keeps rising: to
  about 1.5 around epoch 140 and 1.70 at epoch 150, where one seed hits a loss
  spike (SGD with momentum near zero loss is not stable; see the left panel).
  With flooding the training loss floats at `b` and the test loss peaks (1.51 at
  epoch 29 for `b = 0.05`, 1.42 at epoch 26 for `b = 0.1`), then comes down a
  second time, to 1.01 and 0.95 at epoch 150: below its first minimum, the one
  early stopping would keep. Final test accuracy: 0.645 without flooding, 0.674
  with `b = 0.05`, 0.681 with `b = 0.1` (2 seeds; without flooding they differ
  by 0.03); the validation accuracy picks `b = 0.1`.
* **Flatter minima: not shown by this measure.** The largest Hessian
  eigenvalue is 0.23 and 3.9 for the two unflooded runs and between 0.38 and
  0.47 for all four flooded ones, so the flattest point by this measure is the
  unflooded run at zero training loss (seed 0). That says less about flatness
  than it seems: for the cross-entropy, the curvature shrinks as the predictions
  saturate (the Hessian of the loss with respect to the logits, `diag(p) - p
  p^T`, vanishes as `p` becomes one-hot), so a network driven to zero training
  loss looks flat for that reason alone, and a flooded one cannot get there by
  construction. The right panel shows the confound. At a similar training loss
  the picture reverses: the other unflooded run (seed 1), caught in a loss spike
  at the last epoch with a training loss of 0.025, close to the `b = 0.05` runs'
  0.034, is 8 to 10 times sharper than they are, as the paper would expect; but
  that is one run, in a spike rather than at a minimum. A fair test would compare
  at matched training losses (or with a scale-invariant sharpness) over more
  seeds; this run does not settle it.""",
}


def _results_cell(name: str) -> str:
  text = RESULTS.get(name, "").strip()
  if not text:
    text = "(Written after the full-size run.)"
  return ("## What the committed run shows\n\n*About the full-size run whose outputs are"
          " saved here; the small test run does not reproduce these numbers.*\n\n" + text)


NOTEBOOKS = {
    "quickstart": quickstart,
    "sweep": sweep,
    "double_descent": double_descent,
}


COLAB_ACCELERATOR = {"sweep": "TPU", "double_descent": "GPU"}


def build(name: str) -> nbformat.NotebookNode:
  """The notebook ``name`` without outputs."""
  cells = []
  for i, (kind, source) in enumerate(NOTEBOOKS[name]()):
    if kind == "results":
      source = _results_cell(name)
    if kind == "code":
      cell = v4.new_code_cell(source)
    else:
      cell = v4.new_markdown_cell(source)
    cell.id = PROVENANCE_ID if kind == "provenance" else f"{name}-{i:02d}"
    cells.append(cell)
  nb = v4.new_notebook(cells=cells)
  nb.metadata = {
      "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
      "language_info": {"name": "python"},
      "colab": {"provenance": []},
  }
  if name in COLAB_ACCELERATOR:  # the runtime Colab offers when it opens the notebook
    nb.metadata["accelerator"] = COLAB_ACCELERATOR[name]
  return nb



def _machine(note: str = "") -> str:
  """The machine the notebooks ran on, in words (JAX's platform as the kernel saw it)."""
  try:
    import jax

    device = jax.devices()[0].platform.upper()
  except Exception:  # noqa: BLE001
    device = "CPU"
  return (f"a {os.cpu_count()}-core {platform.machine()} machine"
          f" ({device}{', ' + note if note else ''})")


def execute(nb: nbformat.NotebookNode, name: str, timeout: int = 1800,
            note: str = "") -> float:
  """Runs ``nb`` full size in a fresh kernel, in place; returns the wall time."""
  from nbclient import NotebookClient

  env_small = os.environ.pop("FLOOD_JAX_SMALL", None)
  os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
  try:
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            record_timing=False, resources={"metadata": {"path": str(HERE)}})
    start = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - start
  finally:
    if env_small is not None:
      os.environ["FLOOD_JAX_SMALL"] = env_small
  today = datetime.date.today().isoformat()
  for cell in nb.cells:
    if cell.get("id") == PROVENANCE_ID:
      cell.source = textwrap.dedent(f"""\
          **About the outputs.** The outputs saved in this notebook come from a
          full-size run (`FLOOD_JAX_SMALL` unset) on {_machine(note)}, executed on
          {today} with `python notebooks/build_notebooks.py --execute {name}`
          (nbclient); the whole notebook took {wall:.0f} s of wall time there.
          On a Colab GPU or TPU runtime it runs faster. The tests run it with
          `FLOOD_JAX_SMALL=1`, which shrinks every size.""")
  return wall


def _keep_outputs(nb: nbformat.NotebookNode, saved: nbformat.NotebookNode) -> None:
  """Copies ``saved``'s outputs and provenance into ``nb`` if its code is unchanged."""
  code = [c for c in nb.cells if c.cell_type == "code"]
  saved_code = [c for c in saved.cells if c.cell_type == "code"]
  if [c.source for c in code] != [c.source for c in saved_code]:
    raise ValueError("its code changed since the outputs were saved; run with --execute")
  for cell, old in zip(code, saved_code):
    cell.outputs, cell.execution_count = old.outputs, old.execution_count
  provenance = {c.get("id"): c for c in saved.cells}.get(PROVENANCE_ID)
  for cell in nb.cells:
    if cell.get("id") == PROVENANCE_ID and provenance is not None:
      cell.source = provenance.source


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", default=list(NAMES), help="notebooks to write")
  parser.add_argument("--execute", action="store_true",
                      help="run them full size and save the outputs")
  parser.add_argument("--note", default="",
                      help="a word on the machine for the provenance cell, e.g."
                      " 'shared with other jobs'")
  parser.add_argument("--keep-outputs", action="store_true",
                      help="rewrite the markdown but keep the saved outputs (fails if a"
                      " code cell changed: then use --execute)")
  args = parser.parse_args(argv)
  if args.execute and args.keep_outputs:
    parser.error("--execute and --keep-outputs exclude each other")
  for name in args.names:
    if name not in NOTEBOOKS:
      parser.error(f"unknown notebook {name!r}; known: {', '.join(NAMES)}")
    nb = build(name)
    if args.keep_outputs:
      try:
        _keep_outputs(nb, nbformat.read(HERE / f"{name}.ipynb", as_version=4))
      except ValueError as error:
        parser.error(f"{name}: {error}")
    if args.execute:
      wall = execute(nb, name, note=args.note)
      print(f"{name}: executed in {wall:.0f} s", flush=True)
    path = HERE / f"{name}.ipynb"
    nbformat.validate(nb)
    nbformat.write(nb, path)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
