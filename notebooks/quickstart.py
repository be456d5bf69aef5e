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
# # flood_jax quickstart
#
# *Flooding* (Ishida et al., ICML 2020, [arXiv:2002.08709](https://arxiv.org/abs/2002.08709))
# stops the training loss from going to zero. With `J` the mini-batch loss and `b`
# a small *flood level*, it trains on
#
# $$\tilde J(\theta) = |J(\theta) - b| + b, \qquad \nabla \tilde J = s\,\nabla J,\quad
# s = \begin{cases} +1 & J \ge b \\ -1 & J < b \end{cases}$$
#
# that is, ordinary gradient descent while the loss is above `b` and gradient *ascent*
# when it is below. The training loss then floats around `b` instead of reaching zero.
#
# This notebook shows the pieces of `flood_jax`: the flooded loss, the Optax
# transform `fj.flood(b)` (alone and composed with AdamW and gradient clipping), the
# flooded fraction kept in its state, and the Flax linen and NNX training loops.

# %% [markdown]
# ## 1. The flooded loss
#
# `fj.flooded_loss(J, b)` is `|J - b| + b`: unchanged above `b`, reflected upward
# below it. Its derivative with respect to `J` is `+1` above `b` and `-1` below,
# so the gradient of the network's parameters flips sign below the flood level.

# %%
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
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 2. The `flood` transform on a small problem
#
# Rather than changing the loss function, put `fj.flood(b)` **first** in an Optax
# chain and pass the mini-batch loss to `update` as `value=` (Optax's own name for
# it). `optax.chain(fj.flood(b), opt)` then trains exactly as `opt` on the flooded
# loss.
#
# The problem: the paper's two-Gaussians data (10 dimensions, class 0 around 0,
# class 1 around 1) with 10% of the training labels flipped, 200 training examples,
# and a small MLP (two hidden layers of 100 units, no BatchNorm). A plain training
# loop, jitted per step:

# %%
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
    """Trains `model` with optimizer `tx`; returns params, optimizer state, curves."""
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
    return params, opt_state, np.array(curves)  # columns: train loss, test loss, test accuracy


# %% [markdown]
# Train the same network (same initialization, same batches) without flooding
# (`b = 0`, where `flood` never fires) and with two flood levels:

# %%
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
ax1.legend(); plt.tight_layout(); plt.show()

# %% [markdown]
# Without flooding the training loss heads to zero: the network memorizes the
# flipped labels and its test loss climbs. With flooding the training loss stops
# at the dotted line `b` and stays there (the training loss plotted is measured on
# the whole training set after each epoch, so it sits near, not exactly at, `b`),
# and the test loss stays far lower. (On this small problem the test *accuracy*
# barely moves; the [sweep notebook](sweep.ipynb) looks at accuracy across many
# levels and seeds.) The *flooded fraction* is the share of steps that
# were ascent steps: zero without flooding, around a half once the loss floats at
# `b`.
#
# ## 3. Composing with AdamW and gradient clipping
#
# `flood` is an ordinary Optax transformation, so it composes with anything. It
# must come **first**, on the raw gradient: after a stateful transform such as
# `optax.adam` it would flip Adam's step instead of the gradient Adam sees, which
# is a different method. Clipping by global norm does not change signs, so it may
# go on either side; here it follows `flood`:

# %%
tx = optax.chain(
    fj.flood(0.1),                       # flip the gradient below the flood level
    optax.clip_by_global_norm(1.0),      # then clip
    optax.adamw(1e-3, weight_decay=1e-4),
)
params, opt_state, curves = train(tx)
print(f"final train loss {curves[-1, 0]:.4f}, test accuracy {curves[-1, 2]:.3f}")
print("flooded fraction:", float(fj.flooded_fraction(opt_state)))
print("flood state:", opt_state[0])

# %% [markdown]
# `fj.flooded_fraction(opt_state)` finds the `FloodState` anywhere inside an
# optimizer state (a chain, `optax.inject_hyperparams`, ...) and returns
# `flooded_count / count`. The flood level may also be a traced array (for `vmap`
# over levels) or an Optax schedule `step -> level`.
#
# ## 4. Flax linen: `FloodTrainState`
#
# Linen's `TrainState.apply_gradients` does not pass extra arguments to
# `tx.update`, so the loss would never reach `flood`. `fj.FloodTrainState` does,
# and carries the `batch_stats` of BatchNorm models. Here the paper's kind of MLP,
# with BatchNorm:

# %%
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
      f"flooded fraction {float(fj.flooded_fraction(state.opt_state)):.2f}")

# %% [markdown]
# ## 5. Flax NNX
#
# NNX's `nnx.Optimizer.update` forwards keyword arguments to `tx.update` already,
# so `value=loss` is all it takes:

# %%
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
      f"flooded fraction {float(fj.flooded_fraction(optimizer.opt_state)):.2f}")

# %% [markdown]
# ## Next
#
# * [sweep.ipynb](sweep.ipynb): pick `b` by training dozens of flood levels and
#   seeds at once with `fj.sweep`, sharded over all devices.
# * [double_descent.ipynb](double_descent.ipynb): the paper's epoch-wise double
#   descent of the test loss on MNIST-1D, and how flat the minima are.

# %%
print(f"notebook wall time: {time.perf_counter() - T0:.0f} s on {jax.devices()[0].platform}")
