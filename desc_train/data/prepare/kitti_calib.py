"""KITTI raw calibration and the velodyne ground truth of a camera image.

A date folder of KITTI raw holds ``calib_cam_to_cam.txt`` (per camera 0-3 the
rectified size ``S_rect_0c`` and projection ``P_rect_0c``, and the rectifying
rotation ``R_rect_00``) and ``calib_velo_to_cam.txt`` (``R``, ``T``: velodyne to
camera 0). A velodyne scan ``.bin`` is little-endian float32 (x forward, y left,
z up, reflectance).

The ground truth follows the convention of the Eigen split's published export
(the one DESC, monodepth2 and T2Net evaluate against): every point with x >= 0 is
projected with ``P_rect_0c . R_rect_00 . [R|T]``, its pixel is the rounded
projection minus one (KITTI's MATLAB devkit numbers pixels from 1), points
outside the ``S_rect_0c`` image are dropped, and a pixel hit several times keeps
the smallest depth. The depth is the velodyne x ("velodyne_x", the Eigen
convention) or the projection's third coordinate ("camera_z"). The published
export merges the duplicates of pixel (r, W-1) with those of (r+1, 0); this
module takes the true per-pixel minimum, so it agrees with the export everywhere
except in the first and last columns, which the Garg crop of the evaluation
leaves out.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Tuple, Union

import numpy as np

from ..layout import DataError

CAM_TO_CAM = "calib_cam_to_cam.txt"
VELO_TO_CAM = "calib_velo_to_cam.txt"
DEPTH_KINDS = ("velodyne_x", "camera_z")
_NUMERIC = set("0123456789.e+- ")


def read_calib_file(path: str) -> Dict[str, Union[np.ndarray, str]]:
    """The ``key: values`` lines of a KITTI calibration file: numeric values as a
    float64 array, others (``calib_time: 09-Jan-2012 13:57:47``) as text."""
    out: Dict[str, Union[np.ndarray, str]] = {}
    with open(path) as f:
        for line in f:
            if ":" not in line:
                continue
            key, value = line.split(":", 1)  # the first ':' only: times contain more
            value = value.strip()
            if value and set(value) <= _NUMERIC:
                try:
                    out[key.strip()] = np.array([float(v) for v in value.split()])
                    continue
                except ValueError:
                    pass  # e.g. "1-2": numeric characters, not numbers
            out[key.strip()] = value
    return out


def _values(calib: Dict, key: str, count: int, path: str) -> np.ndarray:
    value = calib.get(key)
    if value is None:
        raise DataError(f"{path}: no {key} line (a KITTI raw calibration file has one); re-extract the date's "
                        f"calibration archive")
    if isinstance(value, str) or value.size != count:
        raise DataError(f"{path}: {key} must hold {count} numbers, got {value!r}")
    return value


def calibration_file(root: str, date: str, name: str) -> str:
    """The path of a date's calibration file; DataError naming its archive when it is missing."""
    path = os.path.join(root, date, name)
    if not os.path.exists(path):
        raise DataError(f"{path} missing: extract {date}_calib.zip (raw data \"calibration\" archive) into {root}")
    return path


@dataclass
class Camera:
    """One rectified camera of a date: what the converter needs of it."""

    date: str
    cam: int  # 2 = left colour (image_02), 3 = right colour (image_03)
    size: Tuple[int, int]  # (H0, W0) of S_rect_0c: the size of every image of the date
    K: Tuple[float, float, float, float]  # fx, fy, cx, cy of P_rect_0c
    baseline: float  # metres between the colour cameras (P_rect_03 against P_rect_02)
    P_rect: np.ndarray  # (3, 4)
    R_rect_00: np.ndarray  # (3, 3)


def _baseline(P2: np.ndarray, P3: np.ndarray) -> float:
    """Metres from camera 2 to camera 3: each P_rect's x offset is -fx times the
    camera's x position."""
    return float(P3[0, 3] / -P3[0, 0] - P2[0, 3] / -P2[0, 0])


def load_camera(root: str, date: str, cam: int = 2) -> Camera:
    """Camera `cam` of `root/date/calib_cam_to_cam.txt`."""
    path = calibration_file(root, date, CAM_TO_CAM)
    calib = read_calib_file(path)
    P = {c: _values(calib, f"P_rect_0{c}", 12, path).reshape(3, 4) for c in (2, 3)}
    W0, H0 = (int(round(v)) for v in _values(calib, f"S_rect_0{cam}", 2, path))
    P_rect = P[cam]
    return Camera(date=date, cam=cam, size=(H0, W0), K=(P_rect[0, 0], P_rect[1, 1], P_rect[0, 2], P_rect[1, 2]),
                  baseline=_baseline(P[2], P[3]), P_rect=P_rect,
                  R_rect_00=_values(calib, "R_rect_00", 9, path).reshape(3, 3))


def load_velo_to_cam(root: str, date: str) -> np.ndarray:
    """The 4x4 velodyne -> camera 0 transform of `root/date/calib_velo_to_cam.txt`."""
    path = calibration_file(root, date, VELO_TO_CAM)
    calib = read_calib_file(path)
    M = np.eye(4)
    M[:3, :3] = _values(calib, "R", 9, path).reshape(3, 3)
    M[:3, 3] = _values(calib, "T", 3, path)
    return M


def velo_to_image(camera: Camera, velo_to_cam: np.ndarray) -> np.ndarray:
    """The (3, 4) projection of homogeneous velodyne points into the camera's
    rectified image: P_rect_0c . R_rect_00 . [R|T]."""
    R_rect = np.eye(4)
    R_rect[:3, :3] = camera.R_rect_00
    return camera.P_rect @ R_rect @ velo_to_cam


def missing_scan(path: str, how_many: str = "") -> DataError:
    """The error of a velodyne scan that is not there."""
    count = f" ({how_many})" if how_many else ""
    return DataError(f"{path} missing{count}: velodyne ground truth needs the raw *_sync archives "
                     f"(data_depth_velodyne.zip is a different product); or pass --gt-npz gt_depths.npz")


def read_velodyne(path: str) -> np.ndarray:
    """The (N, 4) float32 points of a velodyne scan."""
    if not os.path.exists(path):
        raise missing_scan(path)
    size = os.path.getsize(path)
    if size % 16:
        raise DataError(f"{path}: {size} bytes is not a multiple of 16 (float32 x, y, z, reflectance): "
                        f"a truncated download; re-extract the drive's archive")
    return np.fromfile(path, dtype="<f4").reshape(-1, 4)


def project_depth(points: np.ndarray, projection: np.ndarray, size: Tuple[int, int],
                  kind: str = "velodyne_x") -> np.ndarray:
    """The (H0, W0) float32 depth map (metres, 0 = none) of velodyne `points`
    under the (3, 4) `projection` (see the module docstring)."""
    if kind not in DEPTH_KINDS:
        raise ValueError(f"depth kind must be one of {DEPTH_KINDS}, got {kind!r}")
    H, W = size
    ahead = points[points[:, 0] >= 0]
    xyz1 = np.concatenate([ahead[:, :3].astype(np.float64), np.ones((len(ahead), 1))], axis=1)
    uvw = xyz1 @ projection.T
    with np.errstate(divide="ignore", invalid="ignore"):  # w = 0 gives non-finite u, v, dropped below
        col = np.round(uvw[:, 0] / uvw[:, 2]) - 1
        row = np.round(uvw[:, 1] / uvw[:, 2]) - 1
    depth = ahead[:, 0].astype(np.float64) if kind == "velodyne_x" else uvw[:, 2]
    inside = (col >= 0) & (row >= 0) & (col < W) & (row < H)
    flat = np.full(H * W, np.inf)
    np.minimum.at(flat, row[inside].astype(np.int64) * W + col[inside].astype(np.int64), depth[inside])
    # a negative minimum (a point behind the camera plane) makes the pixel empty, as in the export
    flat[~np.isfinite(flat) | (flat < 0)] = 0
    return flat.reshape(H, W).astype(np.float32)
