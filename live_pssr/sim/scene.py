"""A live mitochondria-like scene: tubular networks that drift, bend, split and join.

Geometry is in micrometres (um) on a rectangular field ``field_um = (height_um, width_um)``
whose origin is the top-left corner (y down, x right); time ``tau`` is in seconds.

Model
-----
The scene holds ``n_networks`` networks. A network is a small tree of *branches*: a trunk
(4-10 um long) and 2-6 children (1.5-5 um) attached to earlier branches at a point along them
(30 % of them at the parent's tip: end-to-end junctions). Every branch is a tube of diameter
0.3-0.7 um with a smoothly varying curvature.

Motion is an analytic function of ``tau`` and of parameters drawn once from the seed, so the
state at any time can be evaluated in any order:

* each network's centre drifts on a sum of two slow sinusoids per axis (up to ~0.6 um/s) and
  its orientation oscillates;
* each branch's curvature, length (+-15 %) and angle to its parent oscillate (bending);
* about half the junctions, and the middle of about half the trunks, open and close
  periodically: a gap of 0.3-1.2 um appears for half of each 12-40 s period (fission) and
  closes again (fusion).

Intensity
---------
A tube is sampled as ``n_lanes`` parallel lines across its width. The dye amount of a sample
is proportional to the tube volume it represents: chord thickness ``w * sqrt(1 - (2x/w)^2)``
(um) times lane spacing (um) times the sample spacing along the tube (um), times the
network's relative brightness (0.6-1.0). :meth:`MitoScene.samples` returns these point
samples in "dye units" (um^3); the microscope converts them to photons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: widths of the tubes, um
WIDTH_RANGE_UM = (0.3, 0.7)
#: field area (um^2) for which ``n_networks`` is the number of networks (256 px * 0.16 um)^2
REFERENCE_AREA_UM2 = (256 * 0.16) ** 2


def lane_offsets(n_lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions across a tube (in units of its width) and relative thickness of ``n_lanes``.

    Returns
    -------
    (offsets, thickness) : tuple of np.ndarray
        ``offsets`` in (-0.5, 0.5) at lane midpoints; ``thickness = sqrt(1 - (2*offsets)^2)``.
    """
    offsets = (np.arange(n_lanes) + 0.5) / n_lanes - 0.5
    return offsets, np.sqrt(1.0 - (2.0 * offsets) ** 2)


def tube_points(
    y: np.ndarray,
    x: np.ndarray,
    theta: np.ndarray,
    width: np.ndarray,
    line_weight: np.ndarray,
    n_lanes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand centreline samples into ``n_lanes`` samples across the tube.

    Parameters
    ----------
    y, x : np.ndarray
        Centreline sample positions (um), any shape (flattened).
    theta : np.ndarray
        Tangent angle (rad): the tangent is ``(dy, dx) = (sin theta, cos theta)``.
    width : np.ndarray
        Tube diameter (um) at each sample.
    line_weight : np.ndarray
        Brightness times sample spacing along the tube (um) of each sample.
    n_lanes : int
        Number of lanes across the tube.

    Returns
    -------
    (y, x, weight) : tuple of np.ndarray
        Flat arrays of lane samples; ``weight`` in dye units (um^3).
    """
    offsets, thick = lane_offsets(n_lanes)
    y, x, theta, width, line_weight = (np.ravel(a)[:, None] for a in (y, x, theta, width, line_weight))
    off = width * offsets  # (n, lanes) um, along the normal (cos theta, -sin theta)
    py = y + np.cos(theta) * off
    px = x - np.sin(theta) * off
    weight = line_weight * (width * thick) * (width / n_lanes)
    return py.ravel(), px.ravel(), weight.ravel()


@dataclass(frozen=True)
class _Branches:
    """Per-branch parameters (arrays indexed by global branch number)."""

    net: np.ndarray
    parent: np.ndarray
    gen: np.ndarray
    attach: np.ndarray
    length: np.ndarray
    width: np.ndarray
    bright: np.ndarray
    osc: np.ndarray  # (n, 5 oscillators, 3 = amplitude, omega, phase)
    kappa0: np.ndarray
    grad0: np.ndarray
    rel0: np.ndarray
    gap_amp: np.ndarray
    split: np.ndarray


class MitoScene:
    """Seeded, analytic mitochondrial-network scene.

    Parameters
    ----------
    field_um : tuple of float
        (height, width) of the field of view in um.
    n_networks : int
        Networks per :data:`REFERENCE_AREA_UM2` (a 41 x 41 um field); the count is scaled
        with the field area (at least 1 when ``n_networks > 0``).
    seed : int
        Seed of the geometry and its motion.
    sample_um : float
        Largest spacing of samples along a tube (um).
    """

    # oscillator slots in _Branches.osc
    _KAPPA, _GRAD, _LEN, _REL, _GAP = range(5)

    def __init__(self, field_um: tuple[float, float], n_networks: int, seed: int, sample_um: float) -> None:
        self.field_um = (float(field_um[0]), float(field_um[1]))
        self.sample_um = float(sample_um)
        area = self.field_um[0] * self.field_um[1]
        n = 0 if n_networks <= 0 else max(1, round(n_networks * area / REFERENCE_AREA_UM2))
        self.n_networks = n
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        self._make_networks(rng, n)
        self._make_branches(rng, n)

    # -- parameters -------------------------------------------------------------------------
    def _make_networks(self, rng: np.random.Generator, n: int) -> None:
        h, w = self.field_um
        self._center0 = np.stack(
            [rng.uniform(-1.0, h + 1.0, n), rng.uniform(-1.0, w + 1.0, n)], axis=1
        )  # (n, 2) = y, x
        self._drift_amp = rng.uniform(0.4, 1.6, (n, 2, 2))  # um (network, axis, component)
        self._drift_omega = rng.uniform(0.05, 0.25, (n, 2, 2))  # rad/s
        self._drift_phase = rng.uniform(0, 2 * np.pi, (n, 2, 2))
        self._theta0 = rng.uniform(0, 2 * np.pi, n)
        self._rot = np.stack(
            [rng.uniform(0.1, 0.4, n), rng.uniform(0.05, 0.25, n), rng.uniform(0, 2 * np.pi, n)],
            axis=1,
        )  # amplitude rad, omega rad/s, phase

    def _make_branches(self, rng: np.random.Generator, n: int) -> None:
        net, parent, gen = [], [], []
        for k in range(n):
            first = len(net)
            net.append(k)
            parent.append(-1)
            gen.append(0)
            for _ in range(int(rng.integers(2, 7))):
                p = first + int(rng.integers(0, len(net) - first))
                net.append(k)
                parent.append(p)
                gen.append(gen[p] + 1)
        nb = len(net)
        net_a = np.asarray(net, dtype=np.intp)
        gen_a = np.asarray(gen, dtype=np.intp)
        trunk = gen_a == 0
        at_tip = rng.random(nb) < 0.3
        attach = np.where(at_tip, 1.0, rng.uniform(0.15, 0.9, nb))
        length = np.where(trunk, rng.uniform(4.0, 10.0, nb), rng.uniform(1.5, 5.0, nb))
        net_width = rng.uniform(*WIDTH_RANGE_UM, max(n, 1))
        width = np.clip(net_width[net_a] + rng.uniform(-0.08, 0.08, nb), *WIDTH_RANGE_UM)
        bright = rng.uniform(0.6, 1.0, max(n, 1))[net_a]
        osc = np.empty((nb, 5, 3))
        osc[:, self._KAPPA] = np.stack(
            [rng.uniform(0.05, 0.25, nb), rng.uniform(0.1, 0.5, nb), rng.uniform(0, 6.3, nb)], 1
        )
        osc[:, self._GRAD] = np.stack(
            [rng.uniform(0.05, 0.3, nb), rng.uniform(0.1, 0.5, nb), rng.uniform(0, 6.3, nb)], 1
        )
        osc[:, self._LEN] = np.stack(
            [rng.uniform(0.0, 0.15, nb), rng.uniform(0.05, 0.3, nb), rng.uniform(0, 6.3, nb)], 1
        )
        osc[:, self._REL] = np.stack(
            [rng.uniform(0.05, 0.35, nb), rng.uniform(0.1, 0.4, nb), rng.uniform(0, 6.3, nb)], 1
        )
        osc[:, self._GAP] = np.stack([np.ones(nb), rng.uniform(0.15, 0.5, nb), rng.uniform(0, 6.3, nb)], 1)
        dynamic = rng.random(nb) < 0.5
        gap_amp = np.where(dynamic, rng.uniform(0.3, 1.2, nb), 0.0)
        rel0 = rng.choice([-1.0, 1.0], nb) * rng.uniform(np.radians(25), np.radians(80), nb)
        self._b = _Branches(
            net=net_a,
            parent=np.asarray(parent, dtype=np.intp),
            gen=gen_a,
            attach=attach,
            length=length,
            width=width,
            bright=bright,
            osc=osc,
            kappa0=rng.uniform(-0.3, 0.3, nb),
            grad0=rng.uniform(-0.3, 0.3, nb),
            rel0=rel0,
            gap_amp=gap_amp,
            split=rng.uniform(0.3, 0.7, nb),
        )
        # samples per branch, per generation (branches of one generation share the count)
        max_scale = 1.0 + osc[:, self._LEN, 0]
        self._gens = []
        for g in range(int(gen_a.max()) + 1 if nb else 0):
            idx = np.flatnonzero(gen_a == g)
            n_s = int(np.ceil((length[idx] * max_scale[idx]).max() / self.sample_um)) + 1
            self._gens.append((idx, max(n_s, 2)))

    @property
    def n_branches(self) -> int:
        """Total number of branches."""
        return int(self._b.net.size)

    # -- state at time tau -----------------------------------------------------------------
    def _osc(self, idx: np.ndarray, slot: int, tau: float) -> np.ndarray:
        a, w, p = self._b.osc[idx, slot].T
        return a * np.sin(w * tau + p)

    def _gap(self, idx: np.ndarray, tau: float) -> np.ndarray:
        return self._b.gap_amp[idx] * np.maximum(0.0, self._osc(idx, self._GAP, tau))

    def network_centers(self, tau: float) -> np.ndarray:
        """Centres (y, x) of the networks at time ``tau`` (s), shape (n_networks, 2), um."""
        s = np.sin(self._drift_omega * tau + self._drift_phase) - np.sin(self._drift_phase)
        return self._center0 + (self._drift_amp * s).sum(axis=2)

    def centerlines(self, tau: float) -> tuple[np.ndarray, ...]:
        """Centreline samples of every branch at time ``tau`` (s).

        Returns
        -------
        (y, x, theta, width, line_weight) : tuple of np.ndarray
            Flat arrays: positions (um), tangent angle (rad, tangent = (sin, cos) in (y, x)),
            tube diameter (um) and brightness times sample spacing (um).
        """
        b = self._b
        out: list[list[np.ndarray]] = [[], [], [], [], []]
        centers = self.network_centers(tau)
        rot_a, rot_w, rot_p = self._rot.T
        net_theta = self._theta0 + rot_a * np.sin(rot_w * tau + rot_p)
        row_of = np.zeros(b.net.size, dtype=np.intp)  # row of a branch within its generation
        prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        for idx, n_s in self._gens:
            length = b.length[idx] * (1.0 + self._osc(idx, self._LEN, tau))
            ds = length / (n_s - 1)
            s = np.linspace(0.0, 1.0, n_s)[None, :] * length[:, None]
            kappa = (b.kappa0[idx] + self._osc(idx, self._KAPPA, tau))[:, None]  # rad/um
            grad = (b.grad0[idx] + self._osc(idx, self._GRAD, tau))[:, None]  # rad/um
            taper = 1.0
            if prev is None:  # trunks: centred on their network
                base = net_theta[b.net[idx]]
                c = centers[b.net[idx]]
                start_y = c[:, 0] - 0.5 * length * np.sin(base)
                start_x = c[:, 1] - 0.5 * length * np.cos(base)
            else:  # children: start at their attachment point, or a gap beyond it
                p_y, p_x, p_theta = prev
                rows = row_of[b.parent[idx]]
                k = np.rint(b.attach[idx] * (p_y.shape[1] - 1)).astype(np.intp)
                base = p_theta[rows, k] + b.rel0[idx] + self._osc(idx, self._REL, tau)
                gap = self._gap(idx, tau)
                start_y = p_y[rows, k] + gap * np.sin(base)
                start_x = p_x[rows, k] + gap * np.cos(base)
                # fade in the part of a joined child that lies inside its parent's tube
                half = 0.5 * b.width[b.parent[idx]][:, None]
                taper = np.clip((s + gap[:, None]) / half, 0.0, 1.0)
            # curvature kappa + grad * (s/L - 1/2)  =>  theta(s) = base + kappa s + grad (...)
            lcol = length[:, None]
            theta = base[:, None] + kappa * s + grad * (s * s / (2 * lcol) - s / 2)
            sm = 0.5 * (s[:, 1:] + s[:, :-1])
            mid = base[:, None] + kappa * sm + grad * (sm * sm / (2 * lcol) - sm / 2)
            y = np.empty_like(s)
            x = np.empty_like(s)
            y[:, 0] = 0.0
            x[:, 0] = 0.0
            np.cumsum(np.sin(mid) * ds[:, None], axis=1, out=y[:, 1:])
            np.cumsum(np.cos(mid) * ds[:, None], axis=1, out=x[:, 1:])
            y += start_y[:, None]
            x += start_x[:, None]
            if prev is None:
                # fission/fusion inside trunks: the distal part moves away along the tangent
                gap = self._gap(idx, tau)
                ks = np.rint(b.split[idx] * (n_s - 1)).astype(np.intp)
                t_split = theta[np.arange(idx.size), ks]
                beyond = np.arange(n_s)[None, :] > ks[:, None]
                y += beyond * (gap * np.sin(t_split))[:, None]
                x += beyond * (gap * np.cos(t_split))[:, None]
            row_of[idx] = np.arange(idx.size)
            prev = (y, x, theta)
            width = np.broadcast_to(b.width[idx][:, None], s.shape)
            weight = np.broadcast_to((b.bright[idx] * ds)[:, None] * taper, s.shape)
            for lst, arr in zip(out, (y, x, theta, width, weight), strict=True):
                lst.append(arr.ravel())
        if not out[0]:
            return tuple(np.zeros(0) for _ in out)
        return tuple(np.concatenate(lst) for lst in out)

    def samples(self, tau: float, n_lanes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point samples (lanes across every tube) of the scene at time ``tau`` (s).

        Returns
        -------
        (y, x, weight) : tuple of np.ndarray
            Flat arrays: positions (um) and dye amount (um^3) of each sample.
        """
        return tube_points(*self.centerlines(tau), n_lanes=n_lanes)
