"""Device memory of a CIFAR-shaped sweep with the images as float32 or as uint8 pixels.

``fj.data.load(name, pixels=True)`` keeps the images as uint8 and ``fj.models.FromPixels``
scales them on the device. This compares what ``fj.plan`` (XLA's memory analysis of the
training call, on one CPU device) plans per device for the two, on random CIFAR-shaped data
(40,000 training, 10,000 validation and 10,000 test images of 32x32x3, the default 80:20
split of CIFAR-10's training set; the numbers depend on the shapes, not the pixels).

    FLOOD_JAX_CPU_DEVICES=1 python benchmarks/pixels.py
"""

from __future__ import annotations

import os

os.environ.setdefault("FLOOD_JAX_CPU_DEVICES", "1")

import numpy as np
import optax

import flood_jax as fj
from flood_jax.data import IMAGE_SETS


def dataset(pixels: bool) -> fj.Dataset:
  rng = np.random.default_rng(0)
  split = {"train": 40_000, "val": 10_000, "test": 10_000}
  arrays = {}
  for name, n in split.items():
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    arrays[f"x_{name}"] = x if pixels else (x / np.float32(255.0)).astype(np.float32)
    arrays[f"y_{name}"] = rng.integers(0, 10, size=n).astype(np.int32)
  return fj.Dataset(**arrays, name=f"cifar-shaped ({'uint8' if pixels else 'float32'})")


def main() -> None:
  spec = IMAGE_SETS["cifar10"]
  cnn = fj.models.CNN(num_classes=10)
  rows = []
  for pixels in (False, True):
    model = fj.models.FromPixels(cnn, spec.mean, spec.std) if pixels else cnn
    plan = fj.plan(
      model,
      dataset(pixels),
      flood_levels=np.linspace(0, 0.2, 8),
      seeds=[0],
      optimizer=optax.sgd(0.01, momentum=0.9),
      epochs=2,
      batch_size=128,
      chunk_size=8,
      eval_batch_size=256,
      memory_limit="64GB",
    )
    rows.append((pixels, plan))
    print(plan)
  print()
  print("| images on the device | data per device | planned peak per device (8 CNNs) |")
  print("|---|---|---|")
  for pixels, plan in rows:
    data = plan.parts["data"] / 2**20
    peak = (plan.bytes_per_device or 0) / 2**30
    print(f"| {'uint8 pixels' if pixels else 'float32'} | {data:,.0f} MiB | {peak:.2f} GiB |")


if __name__ == "__main__":
  main()
