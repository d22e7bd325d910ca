"""Data parallelism with jax.sharding: one mesh axis 'data' over all devices.

Batches are split along their leading axis across the devices; parameters and optimizer
state are replicated. jit then inserts the gradient all-reduce itself, so `train_step` is
the same function on 1 or N devices.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from selfconsume.errors import ConfigError

DATA_AXIS = "data"


def initialize_distributed(enabled: bool) -> None:
  """Calls jax.distributed.initialize() for multi-host TPU/GPU runs (config.train.multi_host).

  Must run before any other JAX call; the coordinator address and process ids come from the
  cluster environment (TPU pods, SLURM, ...). A no-op when `enabled` is False.
  """
  if enabled:
    jax.distributed.initialize()


def is_file_writer() -> bool:
  """Whether this process writes the run's files: under jax.distributed every process
  computes and process 0 alone writes (rows, metrics, TensorBoard, videos, reports); always
  True in a single process."""
  return jax.process_index() == 0


def sync(name: str) -> None:
  """Every process waits here for the others (after process 0 wrote what they will read);
  a no-op in a single process."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def agreed(value: int) -> int:
  """Process 0's value of an integer that every process must act on alike (which generation
  a rerun resumes from, whether a file still has to be computed): processes may see a shared
  workdir at different moments. The value itself in a single process."""
  if jax.process_count() == 1:
    return int(value)
  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis 'data' over `devices` (default: all devices of all hosts)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the 'data' axis, other axes whole."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """The same full copy on every device of the mesh."""
  return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh, field: str = "config.train.batch_size"
                     ) -> None:
  """Raises ConfigError unless `batch_size` (the config `field`) splits evenly over the
  mesh's devices."""
  n = mesh.devices.size
  if batch_size % n:
    raise ConfigError(f"{field} ({batch_size}) must be divisible by the number of devices "
                      f"({n})")


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Places every array of a batch pytree (leading axis B) split over the mesh."""
  sharding = batch_sharding(mesh)
  for leaf in jax.tree.leaves(batch):
    check_batch_size(leaf.shape[0], mesh)
  return jax.device_put(batch, sharding)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree (train state, data buffer) fully on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def place(tree: Any, mesh: Mesh | None) -> Any:
  """A compiled program's inputs: replicated over the mesh, or without one committed to the
  one local device.

  Committed either way, so a program sees the same placement whether its inputs were
  computed or restored from a checkpoint (restored arrays are committed, computed ones are
  not). The placement is part of the program's compilation-cache key: a resumed run would
  otherwise miss the persistent cache and compile again what the crashed run compiled.
  """
  if mesh is not None:
    return replicate(tree, mesh)
  return jax.device_put(tree, jax.local_devices()[0])
