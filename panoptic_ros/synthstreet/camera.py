"""The SynthStreet pinhole camera over a flat street (metres, camera 1.5 m above the road).

World axes: X to the right, Y up from the road surface, Z forward (depth). Image rows grow
downwards; the horizon is the row of points at infinite depth. Horizontal pixels per
metre carry ``width / (2 * height)`` so that any image size shows the same scene (the
geometry is defined for a 2:1 image and stretched otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAMERA_HEIGHT_M = 1.5


@dataclass(frozen=True)
class Camera:
    """Pinhole camera in pixels.

    Attributes:
        height, width: image size.
        focal: vertical focal length in pixels.
        horizon: image row of the horizon (vanishing point row).
        cx: image column of the vanishing point.
    """

    height: int
    width: int
    focal: float
    horizon: float
    cx: float

    @property
    def fx(self) -> float:
        """Horizontal focal length in pixels."""
        return self.focal * self.width / (2.0 * self.height)

    @property
    def z_bottom(self) -> float:
        """Depth (m) of the road seen in the bottom image row."""
        return self.focal * CAMERA_HEIGHT_M / (self.height - self.horizon)

    def z_of_row(self, row: float) -> float:
        """Depth (m) of the road point seen in ``row`` (must be below the horizon)."""
        return self.focal * CAMERA_HEIGHT_M / (row - self.horizon)

    def row_of_z(self, z: float) -> float:
        """Image row of the road at depth ``z``."""
        return self.horizon + self.focal * CAMERA_HEIGHT_M / z

    def project(self, X, Y, Z) -> np.ndarray:
        """(N, 2) float pixel x, y of world points (arrays broadcast; Z > 0)."""
        inv = 1.0 / np.asarray(Z, np.float64)
        x = self.cx + self.fx * np.asarray(X, np.float64) * inv
        y = self.horizon + self.focal * (CAMERA_HEIGHT_M - np.asarray(Y, np.float64)) * inv
        out = np.empty(np.broadcast(x, y).shape + (2,))
        out[..., 0], out[..., 1] = x, y
        return out.reshape(-1, 2)

    def ppm(self, z: float) -> tuple[float, float]:
        """Pixels per metre (horizontal, vertical) of an upright plane at depth ``z``."""
        return self.fx / z, self.focal / z

    def ground_quads(self, x0, x1, z0, z1) -> np.ndarray:
        """(N, 4, 2) pixels of road-level rectangles X in [x0, x1], Z in [z0, z1] (arrays broadcast)."""
        x0, x1, z0, z1 = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, np.float64)) for v in (x0, x1, z0, z1)))
        X = np.stack([x0, x1, x1, x0], axis=-1)
        Z = np.stack([z0, z0, z1, z1], axis=-1)
        return self.project(X, 0.0, Z).reshape(-1, 4, 2)

    def side_quads(self, x, z0, z1, y0, y1) -> np.ndarray:
        """(N, 4, 2) pixels of upright rectangles in the planes X = x (facades along the street)."""
        x, z0, z1, y0, y1 = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, np.float64))
                                                  for v in (x, z0, z1, y0, y1)))
        Y = np.stack([y0, y0, y1, y1], axis=-1)
        Z = np.stack([z0, z1, z1, z0], axis=-1)
        return self.project(x[..., None], Y, Z).reshape(-1, 4, 2)

    def ground_quad(self, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
        """(4, 2) pixels of the road-level rectangle X in [x0, x1], Z in [z0, z1]."""
        return self.ground_quads(x0, x1, z0, z1)[0]

    def side_quad(self, x: float, z0: float, z1: float, y0: float, y1: float) -> np.ndarray:
        """(4, 2) pixels of the upright rectangle in the plane X = x (a facade along the street)."""
        return self.side_quads(x, z0, z1, y0, y1)[0]

    def front_quad(self, z: float, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
        """(4, 2) pixels of the upright rectangle in the plane Z = z (facing the camera)."""
        return self.project([x0, x1, x1, x0], [y0, y0, y1, y1], z)

    def intrinsics(self) -> np.ndarray:
        """(3, 3) camera matrix K (the principal point is the vanishing point)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.focal, self.horizon], [0.0, 0.0, 1.0]])
