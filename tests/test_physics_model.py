"""The humanoid model, inverse kinematics, settings and the output selection (no simulation)."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from selfconsume import errors
from selfconsume.motion import skeleton
from selfconsume.motion import rotations
from selfconsume.physics import corrector
from selfconsume.physics import demo_motions
from selfconsume.physics import humanoid
from selfconsume.physics import params as params_lib
from selfconsume.physics import retarget
from selfconsume.physics import rollout


def test_mjcf_rest_pose_matches_the_skeleton():
  spec = humanoid.HumanoidSpec()
  model = humanoid.mj_model(spec)
  index = humanoid.model_index(spec)
  data = mujoco.MjData(model)
  mujoco.mj_forward(model, data)
  expected = skeleton.rest_pose() + np.array([0.0, skeleton.standing_root_height(), 0.0])
  np.testing.assert_allclose(data.site_xpos[index.site_of_joint], expected, atol=1e-5)
  # 16 ball joints + a free root, human-like mass, 10 colliding spheres.
  assert model.nv == 6 + 3 * humanoid.NUM_BALLS
  assert 60.0 < index.total_mass < 85.0
  assert int(np.sum(model.geom_conaffinity > 0)) == 11  # floor + 10 spheres


def test_brax_loads_the_mjcf():
  system = humanoid.brax_system(humanoid.HumanoidSpec())
  assert system.nq == 7 + 4 * humanoid.NUM_BALLS


def test_inverse_kinematics_inverts_forward_kinematics():
  key = jax.random.PRNGKey(0)
  k1, k2 = jax.random.split(key)
  local = rotations.axis_angle_to_quaternion(0.6 * jax.random.normal(k1, (5, humanoid.NUM_BALLS, 3)))
  root_quat = rotations.axis_angle_to_quaternion(jax.random.normal(k2, (5, 3)))
  root_pos = jnp.tile(jnp.array([0.3, 0.9, -1.0]), (5, 1))
  joints = retarget.forward_kinematics(root_pos, root_quat, local)
  pos, quat, local_ik = jax.jit(retarget.joints_to_targets)(joints)
  again = retarget.forward_kinematics(pos, quat, local_ik)
  np.testing.assert_allclose(again, joints, atol=1e-4)


def test_params_from_config_validates():
  p = params_lib.from_config({"substeps": 5})
  assert p.substeps == 5
  assert p.spec.timestep == pytest.approx(0.01)
  with pytest.raises(errors.ConfigError, match="unknown fields"):
    params_lib.from_config({"substep": 5})
  with pytest.raises(errors.ConfigError, match="unknown fields .'gamma'"):  # the loop's, not ours
    params_lib.from_config({"gamma": 1.0})
  with pytest.raises(errors.ConfigError, match="backend"):
    params_lib.from_config({"backend": "positional"})
  with pytest.raises(errors.ConfigError, match="nonfinite"):
    params_lib.from_config({"nonfinite": "zero"})
  with pytest.raises(errors.ConfigError, match="refine_method"):
    params_lib.from_config({"refine_method": "adam"})
  with pytest.raises(errors.ConfigError, match="refine_window"):
    params_lib.from_config({"refine_window": 0})
  with pytest.raises(errors.ConfigError, match="solver"):
    params_lib.from_config({"solver": "PGS"})
  with pytest.raises(errors.ConfigError, match="jacobian"):
    params_lib.from_config({"jacobian": "auto"})


def test_nonfinite_samples_never_leave_the_corrector():
  original = jnp.ones((4, 3, 2))
  original = original.at[3].set(jnp.nan)          # a sample that was already broken
  simulated = 2.0 * jnp.ones((4, 3, 2))
  simulated = simulated.at[1].set(jnp.nan).at[3].set(jnp.nan)
  nonfinite = jnp.array([False, True, False, True])
  replaced = jnp.array([True, True, False, True])

  kept, keep = corrector.select_outputs(original, simulated, replaced, nonfinite, "keep")
  assert bool(jnp.all(jnp.isfinite(kept)))
  np.testing.assert_array_equal(keep, [True, True, True, False])
  np.testing.assert_array_equal(kept[:, 0, 0], [2.0, 1.0, 1.0, 0.0])  # sample 1 uncorrected

  dropped, keep = corrector.select_outputs(original, simulated, replaced, nonfinite, "drop")
  assert bool(jnp.all(jnp.isfinite(dropped)))
  np.testing.assert_array_equal(keep, [True, False, True, False])
  np.testing.assert_array_equal(dropped[:, 0, 0], [2.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("jitted", [False, True])
def test_batches_run_in_fixed_size_chunks(jitted):
  """On the host every chunk is a call of the rollout (the standalone compiled program);
  inside a jitted caller the chunks are one lax.map, traced once."""
  calls = []

  def fake_run(targets, offsets):
    calls.append((offsets.shape[0], isinstance(offsets, jax.core.Tracer)))
    return {"sum": targets["x"] + offsets, "first": targets["x"][:, :1]}

  run = corrector._chunked(fake_run, 8)  # pylint: disable=protected-access
  if jitted:
    run = jax.jit(run)
  for batch in (5, 8, 19):
    calls.clear()
    x = jnp.arange(batch * 3, dtype=jnp.float32).reshape(batch, 3)
    out = run({"x": x}, jnp.ones((batch, 3)))
    np.testing.assert_array_equal(out["sum"], x + 1)
    np.testing.assert_array_equal(out["first"], x[:, :1])
    chunks = -(-batch // 8)
    assert calls == [(8, jitted)] * (1 if jitted else chunks), (batch, calls)


@pytest.mark.parametrize("solver,jacobian,lapack", [("CG", "sparse", False),
                                                     ("Newton", "dense", True)])
def test_default_simulation_makes_no_lapack_call(solver, jacobian, lapack):
  """Batched LAPACK calls wait on XLA:CPU's intra-op pool and can deadlock it when two run
  at once; the default solver and mass-matrix layout need none (Newton / dense would)."""
  params = params_lib.CorrectorParams(solver=solver, jacobian=jacobian)
  targets = rollout.targets_from_joints(jnp.asarray(demo_motions.make_batch(4, 8)))
  offsets = jnp.zeros(targets.local_quat.shape[:-1] + (3,), jnp.float32)
  compiled = rollout._compiled(rollout.static_part(params))  # pylint: disable=protected-access
  text = compiled.lower(rollout.make_control(params), targets, offsets).as_text()
  assert ("lapack" in text) == lapack


def test_refinement_loop_is_a_python_loop_on_the_host_and_a_fori_loop_when_jitted():
  traced = []

  def body(i, carry):
    traced.append(isinstance(carry, jax.core.Tracer))
    return carry * 2.0 + i

  loop = lambda carry: corrector._fori_loop(3, body, carry)  # pylint: disable=protected-access
  on_host = loop(jnp.float32(1.0))
  assert traced == [False] * 3
  traced.clear()
  in_program = jax.jit(loop)(jnp.float32(1.0))
  assert traced == [True]                  # the body traced once, inside lax.fori_loop
  assert float(on_host) == float(in_program) == ((1.0 * 2 + 0) * 2 + 1) * 2 + 2
