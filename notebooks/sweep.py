# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Choosing the flood level with `fj.sweep`
#
# Flooding has one hyperparameter, the flood level `b`, and the paper chooses it
# from a grid by validation accuracy. `fj.sweep` trains the whole grid, flood
# levels times seeds, as **one compiled program**: a model's whole run (shuffling,
# mini-batch steps, evaluation after every epoch) is a `lax.scan`, `jax.vmap` runs
# a chunk of models side by side with the data shared, and the chunks are sharded
# over all the devices JAX sees (`jax.devices()`), so on a Colab TPU runtime the
# 8 cores each train their own share of the models. A sweep larger than memory
# runs in several calls of the same program.

# %% [markdown]
# ## The problem and the grid
#
# The paper's two-Gaussians data (10 dimensions, 200 training and 200 validation
# examples, 10% of their labels flipped; a clean test set of 2000), the MLP with
# BatchNorm (two hidden layers of 100 units here, to stay quick on a CPU), Adam
# with learning rate 0.001, mini-batches of 20. Flood levels from 0 (no flooding)
# up in steps of 0.02, and several seeds: a seed fixes the initialization and the
# order of mini-batches, so all levels of a seed are paired.

# %%
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
      f" {EPOCHS} epochs each; levels: {levels.tolist()}")

# %% [markdown]
# ## One call
#
# `fj.sweep` puts `fj.flood(b)` in front of the optimizer for each model. It
# shards over all devices by default (pass `mesh=` for a subset) and picks how
# many models each device trains at once (`chunk_size=`) from the model's size
# and the platform: a few per core on a CPU, many on an accelerator.

# %%
result = fj.sweep(model, ds, flood_levels=levels, seeds=SEEDS, optimizer=optimizer,
                  epochs=EPOCHS, batch_size=20, progress=PROGRESS)
print(result)
print("devices:", result.config["devices"], "| platform:", result.config["platform"],
      "| chunk size (models per device per call):", result.config["chunk_size"])
print("history shapes:", {k: v.shape for k, v in result.history.items()})
print(f"wall time {result.wall_time:.1f} s, including compilation")

# %% [markdown]
# ## The table
#
# One row per level: mean ± standard deviation over the seeds of the final
# validation accuracy, the best validation accuracy over epochs, the final test
# accuracy, the test accuracy at the epoch of best validation accuracy (early
# stopping), the final (unflooded) training loss, the final test loss and the last
# epoch's flooded fraction. `*` marks the best level.

# %%
print(result.summary())

# %% [markdown]
# ## The best level
#
# `result.best_flood_level` maximizes the final validation accuracy averaged over
# seeds; `result.best("best_val")` uses each run's best epoch instead (early
# stopping). The test set plays no part in the choice.

# %%
best = result.best_flood_level
i_best = int(np.flatnonzero(result.flood_levels == best)[0])
final_test = result.history["test_accuracy"][..., -1].mean(axis=1)  # mean over seeds
final_test_loss = result.history["test_loss"][..., -1].mean(axis=1)
print(f"best level by validation: b = {best:.2f}"
      f" (by early stopping: b = {result.best('best_val')['flood_level']:.2f})")
print(f"test accuracy: {final_test[0]:.4f} without flooding, {final_test[i_best]:.4f} at b = {best:.2f}")
print(f"test loss:     {final_test_loss[0]:.4f} without flooding, {final_test_loss[i_best]:.4f} at b = {best:.2f}")

# %% [markdown]
# ## Plots
#
# `flood_jax.plots` writes PNGs: the curves (training loss with each level as a
# dotted line, and test loss) for a few levels, and the final accuracy against the
# flood level.

# %%
import tempfile
from IPython.display import Image, display
from flood_jax import plots

figures = tempfile.mkdtemp()
show = sorted({0.0, best, float(levels[len(levels) // 2]), float(levels[-1])})
display(Image(filename=plots.plot_curves(result, f"{figures}/curves.png", levels=show)))
display(Image(filename=plots.plot_accuracy_vs_level(result, f"{figures}/accuracy.png")))

# %% [markdown]
# ## How the time grows with the number of models
#
# The sweep's point is that `K` models cost much less than `K` single runs. Below,
# sweeps of `K` models of the same network for a fixed number of epochs. Each `K`
# is run twice: the first call compiles the program, the second reuses it (the
# compiled program is cached for the same model and optimizer objects), so its
# time is the training alone. On a CPU the devices are the cores, which share
# their memory bandwidth; on a GPU or TPU, small models leave most of the chip
# idle, so the time per model keeps falling over a wide range of `K`.

# %%
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
plt.tight_layout(); plt.show()

# %% [markdown]
# ## What the committed run shows
#
# *About the full-size run whose outputs are saved here; the small test run does not reproduce these numbers.*
#
# * **Speed.** The 96 models (32 levels x 3 seeds, 200 epochs each) trained in
#   35 s, compilation included, on the 2 CPU devices with 16 models per device
#   per call (3 calls of one compiled program). In the timing study the training
#   time per model-epoch fell from 2.8 ms for one model alone (on one core) to
#   0.83 ms per model with 64 models; compiling took 5 to 8 s per sweep shape.
# * **Loss.** Without flooding the training loss reaches 0.0008 and the test loss
#   climbs to 0.60 by epoch 200; with `b` between 0.04 and 0.3 the test loss ends
#   between 0.33 and 0.39. Levels above about 0.5 (chance level is ln 2 = 0.69)
#   hold the network in an underfit state, and its accuracy falls.
# * **Accuracy.** The validation accuracy picks `b = 0.22`: final validation
#   accuracy 0.817 against 0.773 without flooding. Its final test accuracy is
#   0.852 against 0.842, a gain about the size of the spread between seeds
#   (around 0.01); most levels from 0.02 to 0.5 end between 0.84 and 0.865 on the
#   test set. The validation set is small (200 examples, 10% of them with flipped
#   labels), so the choice is noisy: the early-stopping rule picks 0.14.
# * **Early stopping.** On this problem stopping early does better than any flood
#   level at the last epoch: the unflooded models, read at their epoch of best
#   validation accuracy, reach 0.918 test accuracy. Flooding keeps the final model
#   from degrading (its test loss stays low), but it does not beat stopping early
#   here.

# %% [markdown]
# ## Notes
#
# * On a CPU, `fj.sweep` shards over XLA's CPU devices; this notebook asks for one
#   per core at the top (`jax.config.update("jax_num_cpu_devices", ...)`, which
#   must come before JAX starts). On a GPU or TPU runtime nothing needs setting.
# * With a fixed `chunk_size` (and device count) a model's numbers do not depend on
#   what else is in the sweep; between layouts they agree to round-off at first,
#   and flooding's sign flip can turn a round-off difference into a different step.
# * `checkpoint_dir=` saves the sweep with Orbax as it goes and resumes it; the
#   command line `flood-jax sweep` runs the same engine and writes the table,
#   curves and plots to a folder.

# %%
print(f"notebook wall time: {time.perf_counter() - T0:.0f} s on {jax.devices()[0].platform}")
