"""ZBL screened nuclear repulsion, a pair term added inside the scale (docs/theory.md §2.9).

``E_i = ½ Σ_{e→i} k_e·Z_i Z_j/r · φ(r/a) · f_p(r/r_max) · [r < r_max]`` with the Coulomb
constant ``k_e = 14.3996 eV·Å``, the screening length ``a = 0.4543·0.529/(Z_i^0.3 + Z_j^0.3)``,
the universal screening function ``φ(x) = Σ_k c_k e^{−d_k x}`` and
``r_max = R_cov(Z_i) + R_cov(Z_j)`` (ASE covalent radii).
"""

from __future__ import annotations

import ase.data
import jax
import jax.numpy as jnp
import numpy as np

from ._radial import polynomial_envelope

__all__ = ["zbl_node_energy", "ZBL_C", "ZBL_D", "COVALENT_RADII"]

ZBL_C = (0.1818, 0.5099, 0.2802, 0.02817)
ZBL_D = (3.2, 0.9423, 0.4028, 0.2016)
COULOMB = 14.3996  # eV·Å
A_PREFACTOR = 0.4543 * 0.529
A_EXP = 0.3
COVALENT_RADII = np.asarray(ase.data.covalent_radii, dtype=np.float64)


def zbl_node_energy(
    r: jnp.ndarray,
    numbers: jnp.ndarray,
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    edge_mask: jnp.ndarray,
    num_nodes: int,
    p: int = 5,
) -> jnp.ndarray:
    """Per-node ZBL energy ``[N]`` (summed over edges arriving at the node).

    Args:
        r: edge lengths ``[E]`` (> 0 on real edges).
        numbers: atomic numbers ``[N]`` (0 on padding nodes).
        senders, receivers: ``[E]``.
        edge_mask: ``[E]`` bool; padding edges contribute exactly 0 (and no NaN gradient).
        num_nodes: ``N``.
        p: envelope exponent.
    """
    dtype = r.dtype
    zi = numbers[receivers]
    zj = numbers[senders]
    real = edge_mask & (zi > 0) & (zj > 0)
    zi_f = jnp.where(real, zi, 1).astype(dtype)
    zj_f = jnp.where(real, zj, 1).astype(dtype)
    r_s = jnp.where(real, r, 1.0)
    a = A_PREFACTOR / (zi_f**A_EXP + zj_f**A_EXP)
    x = r_s / a
    phi = sum(c * jnp.exp(-d * x) for c, d in zip(ZBL_C, ZBL_D))
    radii = jnp.asarray(COVALENT_RADII, dtype)
    r_max = radii[jnp.where(real, zi, 1)] + radii[jnp.where(real, zj, 1)]
    env = polynomial_envelope(r_s / r_max, p)
    e = COULOMB * zi_f * zj_f / r_s * phi * env
    e = jnp.where(real & (r_s < r_max), e, 0.0)
    return 0.5 * jax.ops.segment_sum(e, receivers, num_segments=num_nodes)
