"""Pinhole cameras (OpenCV convention), rays, and the body-centred crop camera.

3DHumanGAN (paper §3.2; docs/architecture.md §Inputs and cameras) renders a person from a camera orbiting a canonical,
centred body in a 2:1 frame. A Blender scene camera sees the character anywhere in its frame, so the renderer renders
through a *crop camera*: the scene camera turned to look at the body (same centre, so the two images differ by a
homography) with a focal length that makes the whole body fill a 2:1 frame, and then pastes the crop back into the scene
frame.

Conventions (docs/conventions.md §Camera, §Blender camera):
- camera frame: x right, y down, z forward; `world_to_camera` is rigid (rotation + translation), (B, 4, 4);
- `K` (B, 3, 3) in pixels, with integer pixel coordinates at pixel *centres*: pixel (0, 0) is the centre of the
  top-left pixel, so the image spans [-0.5, W - 0.5] × [-0.5, H - 0.5] and its centre is ((W - 1) / 2, (H - 1) / 2).
  A Blender camera's principal point (docs/conventions.md §Blender camera, measured from the frame's corner) becomes
  `cx = W/2 - shift_x·max(W,H) - 0.5`, `cy = H/2 + shift_y·max(W,H) - 0.5` here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["BodyBehindCamera", "Camera", "crop_camera", "in_frame_corners", "intrinsics_from_fov", "map_pixels", "paste"]


def intrinsics_from_fov(fov_y_deg: float | Tensor, width: int, height: int, *, dtype=torch.float32,
                        device=None) -> Tensor:
    """K (B, 3, 3) for a vertical field of view, square pixels, principal point at the image centre.

    fov_y_deg: scalar or (B,) degrees, measured between the top and bottom *edges* of the frame (height pixels).
    """
    fov = torch.as_tensor(fov_y_deg, dtype=dtype, device=device).reshape(-1)
    if not bool(((fov > 0) & (fov < 180)).all()):
        raise ValueError(f"fov_y_deg must be in (0, 180) degrees, got {fov.tolist()}")
    f = 0.5 * height / torch.tan(torch.deg2rad(fov) / 2)
    K = torch.zeros(fov.shape[0], 3, 3, dtype=dtype, device=device)
    K[:, 0, 0] = f
    K[:, 1, 1] = f
    K[:, 0, 2] = (width - 1) / 2
    K[:, 1, 2] = (height - 1) / 2
    K[:, 2, 2] = 1
    return K


def _rigid_inverse(m: Tensor) -> Tensor:
    """Inverse of rigid 4×4 transforms (..., 4, 4), exact up to rounding (no general matrix inverse)."""
    r_t = m[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(m)
    out[..., :3, :3] = r_t
    out[..., :3, 3] = -(r_t @ m[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1
    return out


def _batched(x, dtype, device, tail: tuple[int, ...], name: str) -> Tensor:
    """x as a (B, *tail) tensor; accepts an unbatched (*tail) input."""
    t = torch.as_tensor(x, dtype=dtype, device=device)
    if t.shape == tail:
        t = t.unsqueeze(0)
    if t.dim() != len(tail) + 1 or tuple(t.shape[1:]) != tail:
        raise ValueError(f"{name} must have shape {tail} or (B, {', '.join(map(str, tail))}), got {tuple(t.shape)}")
    return t


def _look_rotation(forward: Tensor, up: Tensor) -> Tensor:
    """World → camera rotations (B, 3, 3) whose rows are the OpenCV camera axes (x right, y down, z = forward).

    forward, up: (B, 3) world. The camera's y axis is the component of -up orthogonal to forward, so `up` points
    to the top of the image.
    """
    z = F.normalize(forward, dim=-1)
    x = torch.linalg.cross(z, up, dim=-1)
    norm = x.norm(dim=-1)
    if bool((norm < 1e-6 * up.norm(dim=-1).clamp_min(1e-30)).any()):
        raise ValueError("look direction is parallel to the up vector; pass a different `up` (e.g. a horizontal "
                         "one when looking straight up or down)")
    x = x / norm[..., None]
    y = torch.linalg.cross(z, x, dim=-1)
    return torch.stack([x, y, z], dim=-2)


@dataclass(frozen=True, kw_only=True)
class Camera:
    """A batch of pinhole cameras. Always batched: K (B, 3, 3) pixels, world_to_camera (B, 4, 4) rigid.

    width, height: image size in pixels, shared by the batch.
    """

    K: Tensor
    world_to_camera: Tensor
    width: int
    height: int

    def __post_init__(self):
        B = self.K.shape[0] if self.K.dim() == 3 else -1
        if self.K.dim() != 3 or self.K.shape[1:] != (3, 3):
            raise ValueError(f"Camera.K must be (B, 3, 3), got {tuple(self.K.shape)}; add a batch dim with K[None]")
        if self.world_to_camera.shape != (B, 4, 4):
            raise ValueError(f"Camera.world_to_camera must be (B, 4, 4) with B = {B} (from K), "
                             f"got {tuple(self.world_to_camera.shape)}")
        if int(self.width) < 1 or int(self.height) < 1:
            raise ValueError(f"Camera image size must be positive, got width={self.width} height={self.height}")

    # --- basic properties -------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.K.shape[0]

    @property
    def camera_to_world(self) -> Tensor:
        """(B, 4, 4) rigid inverse of world_to_camera."""
        return _rigid_inverse(self.world_to_camera)

    @property
    def center(self) -> Tensor:
        """(B, 3) camera centre in world coordinates."""
        return self.camera_to_world[:, :3, 3]

    def to(self, device=None, dtype=None) -> Camera:
        return replace(self, K=self.K.to(device=device, dtype=dtype),
                       world_to_camera=self.world_to_camera.to(device=device, dtype=dtype))

    # --- rays and projection ----------------------------------------------------------------------------------
    def pixel_grid(self) -> Tensor:
        """(H·W, 2) float (x, y) integer pixel-centre coordinates, row-major (x fastest)."""
        ys, xs = torch.meshgrid(torch.arange(self.height, dtype=self.K.dtype, device=self.K.device),
                                torch.arange(self.width, dtype=self.K.dtype, device=self.K.device), indexing="ij")
        return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)

    def rays(self, pixels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Rays through pixel coordinates: origins (B, N, 3) and unit directions (B, N, 3), both world.

        pixels: (N, 2) or (B, N, 2) float (x, y) in pixels (integers = pixel centres); default all pixels,
        row-major, N = H·W.
        """
        if pixels is None:
            pixels = self.pixel_grid()
        pixels = pixels.to(dtype=self.K.dtype, device=self.K.device)
        if pixels.dim() == 2:
            pixels = pixels.expand(self.batch_size, -1, -1)
        if pixels.dim() != 3 or pixels.shape[-1] != 2 or pixels.shape[0] != self.batch_size:
            raise ValueError(f"pixels must be (N, 2) or (B={self.batch_size}, N, 2), got {tuple(pixels.shape)}")
        homo = torch.cat([pixels, torch.ones_like(pixels[..., :1])], dim=-1)           # (B, N, 3)
        d_cam = torch.linalg.solve(self.K, homo.transpose(1, 2))                        # (B, 3, N)
        cam_to_world = self.camera_to_world
        d_world = (cam_to_world[:, :3, :3] @ d_cam).transpose(1, 2)
        origins = cam_to_world[:, None, :3, 3].expand_as(d_world)
        return origins, F.normalize(d_world, dim=-1)

    def to_camera(self, points: Tensor) -> Tensor:
        """points (B, N, 3) world → (B, N, 3) camera frame."""
        if points.dim() != 3 or points.shape[0] != self.batch_size or points.shape[-1] != 3:
            raise ValueError(f"points must be (B={self.batch_size}, N, 3), got {tuple(points.shape)}")
        R = self.world_to_camera[:, :3, :3]
        t = self.world_to_camera[:, :3, 3]
        return points @ R.transpose(1, 2) + t[:, None, :]

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """points (B, N, 3) world → pixel xy (B, N, 2) and camera depth z (B, N).

        Points at or behind the camera centre (z ≤ 0) give meaningless xy; check depth.
        """
        cam = self.to_camera(points)
        p = cam @ self.K.transpose(1, 2)
        return p[..., :2] / p[..., 2:3], cam[..., 2]

    # --- derived cameras --------------------------------------------------------------------------------------
    def transformed(self, world_to_new: Tensor) -> Camera:
        """The same physical camera with points expressed in another frame: new = world_to_new @ world.

        world_to_new: (4, 4) or (B, 4, 4) rigid. For a character placed by body_to_world, the camera in the body
        frame is `camera.transformed(inverse(body_to_world))`, i.e. world_to_camera @ body_to_world.
        """
        m = _batched(world_to_new, self.world_to_camera.dtype, self.world_to_camera.device, (4, 4), "world_to_new")
        return replace(self, world_to_camera=self.world_to_camera @ _rigid_inverse(m).expand_as(self.world_to_camera))

    def resized(self, width: int, height: int) -> Camera:
        """The same view at another resolution, keeping the frame's edges fixed (align_corners=False).

        Continuous coordinate u = x + 0.5 scales by width / self.width, so x' = s·(x + 0.5) - 0.5: a camera for a
        1/4-resolution map is `resized(W // 4, H // 4)`, whose pixel centres are exactly where bilinear
        upsampling with align_corners=False puts them.
        """
        sx, sy = width / self.width, height / self.height
        S = torch.tensor([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]],
                         dtype=self.K.dtype, device=self.K.device)
        return replace(self, K=S @ self.K, width=int(width), height=int(height))

    # --- constructors -----------------------------------------------------------------------------------------
    @classmethod
    def from_fov(cls, *, fov_y_deg: float | Tensor, width: int, height: int,
                 world_to_camera: Tensor | None = None, dtype=torch.float32, device=None) -> Camera:
        """Camera with K from a vertical field of view; world_to_camera (4, 4) or (B, 4, 4), default identity."""
        K = intrinsics_from_fov(fov_y_deg, width, height, dtype=dtype, device=device)
        if world_to_camera is None:
            world_to_camera = torch.eye(4, dtype=dtype, device=device)
        w2c = _batched(world_to_camera, dtype, device, (4, 4), "world_to_camera")
        B = max(K.shape[0], w2c.shape[0])
        return cls(K=K.expand(B, 3, 3).clone(), world_to_camera=w2c.expand(B, 4, 4).clone(), width=width,
                   height=height)

    @classmethod
    def look_at(cls, eye, target, up=(0.0, 1.0, 0.0), *, fov_y_deg: float | Tensor | None = None,
                K: Tensor | None = None, width: int, height: int, dtype=None, device=None) -> Camera:
        """Camera at `eye` looking at `target`, with `up` (world) towards the top of the image.

        eye, target, up: (3,) or (B, 3) world. Give exactly one of fov_y_deg (scalar or (B,)) or K ((3, 3) or
        (B, 3, 3)). The default up is +Y, the body frame's up.
        """
        if (fov_y_deg is None) == (K is None):
            raise ValueError("Camera.look_at needs exactly one of fov_y_deg or K")
        if dtype is None:
            dtype = eye.dtype if isinstance(eye, Tensor) and eye.is_floating_point() else torch.float32
        if device is None and isinstance(eye, Tensor):
            device = eye.device
        eye = _batched(eye, dtype, device, (3,), "eye")
        target = _batched(target, dtype, device, (3,), "target")
        up = _batched(up, dtype, device, (3,), "up")
        if K is None:
            K = intrinsics_from_fov(fov_y_deg, width, height, dtype=dtype, device=device)
        K = _batched(K, dtype, device, (3, 3), "K")
        B = max(eye.shape[0], target.shape[0], up.shape[0], K.shape[0])
        eye, target, up = eye.expand(B, 3), target.expand(B, 3), up.expand(B, 3)
        R = _look_rotation(target - eye, up)
        w2c = torch.zeros(B, 4, 4, dtype=dtype, device=device)
        w2c[:, :3, :3] = R
        w2c[:, :3, 3] = -(R @ eye[..., None])[..., 0]
        w2c[:, 3, 3] = 1
        return cls(K=K.expand(B, 3, 3).clone(), world_to_camera=w2c, width=width, height=height)

    @classmethod
    def orbit(cls, center, distance: float | Tensor, yaw_deg: float | Tensor, pitch_deg: float | Tensor = 0.0,
              *, fov_y_deg: float | Tensor, width: int, height: int, dtype=torch.float32, device=None) -> Camera:
        """Camera on a sphere around `center` (body frame: Y up, the body faces +Z), looking at it, Y up.

        Yaw 0, pitch 0 puts the camera on the +Z side, facing the body's front. Positive yaw turns the camera
        about +Y by the right-hand rule, towards +X (the subject's left): eye direction
        (sin yaw · cos pitch, sin pitch, cos yaw · cos pitch). Positive pitch raises the camera (looking down).
        center: (3,) or (B, 3); distance, yaw_deg, pitch_deg: scalars or (B,). |pitch| must stay below 90°.
        """
        center = _batched(center, dtype, device, (3,), "center")
        yaw = torch.deg2rad(torch.as_tensor(yaw_deg, dtype=dtype, device=device).reshape(-1))
        pitch = torch.deg2rad(torch.as_tensor(pitch_deg, dtype=dtype, device=device).reshape(-1))
        dist = torch.as_tensor(distance, dtype=dtype, device=device).reshape(-1)
        if not bool((pitch.abs() < math.pi / 2).all()):
            raise ValueError(f"orbit pitch_deg must be in (-90, 90), got {torch.rad2deg(pitch).tolist()}")
        direction = torch.stack([torch.sin(yaw) * torch.cos(pitch), torch.sin(pitch).expand_as(yaw * pitch),
                                 torch.cos(yaw) * torch.cos(pitch)], dim=-1)
        eye = center + dist[:, None] * direction
        return cls.look_at(eye, center.expand_as(eye), (0.0, 1.0, 0.0), fov_y_deg=fov_y_deg, width=width,
                           height=height, dtype=dtype, device=device)


# --- crop camera and paste -------------------------------------------------------------------------------------
class BodyBehindCamera(ValueError):
    """Part of the body is behind or beside the scene camera: no pinhole crop can frame all of it."""


def crop_camera(scene: Camera, vertices: Tensor, *, width: int, height: int, margin: float = 0.1,
                iterations: int = 3, up: Tensor | None = None, front: Tensor | None = None) -> tuple[Camera, Tensor]:
    """A camera at the scene camera's centre, turned to look at the body, framing all of it with a margin.

    scene: Camera (B); vertices: (B, V, 3) posed body in the scene camera's world frame. width, height: the crop
    size (the generator's frame is 2:1, height = 2·width). margin: fraction of the frame left empty on each side
    along the body's limiting axis (the body spans 1 - 2·margin of it), in [0, 0.5).
    up: (B, 3) world direction that points to the top of the crop: the body's own up axis, so that the generator
    sees every body upright as in its training crops, whatever the scene camera's roll or the body's orientation.
    None keeps the scene camera's roll (its up stays the scene's up). front: (B, 3) world, the body's facing
    direction; it takes over as the crop's up as the view comes within ~30° of `up` (looking at the top of the
    head or the soles), where the projection of `up` alone vanishes. The crop is re-aimed `iterations` times at
    the centre of the body's projected bounding box, so the body is centred in the crop.
    Returns the crop Camera (B) and the homography (B, 3, 3) mapping crop pixels to scene pixels
    (K_scene · R_scene · R_cropᵀ · K_crop⁻¹; both with integer pixel centres).
    Raises BodyBehindCamera when part of the body is behind or beside the scene camera; `in_frame_corners` then
    gives points that frame what of it the scene camera sees.
    """
    if not 0 <= margin < 0.5:
        raise ValueError(f"crop_camera margin must be in [0, 0.5), got {margin}")
    B = scene.batch_size
    if vertices.dim() != 3 or vertices.shape[0] != B or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B={B}, V, 3), got {tuple(vertices.shape)}")
    vertices = vertices.to(dtype=scene.K.dtype)
    R_s = scene.world_to_camera[:, :3, :3]
    center = scene.center
    rel = vertices - center[:, None, :]                                              # (B, V, 3) world
    if up is None:
        up, front = -R_s[:, 1, :], None                                              # scene image's up, world
    else:
        up = F.normalize(_batched(up, scene.K.dtype, scene.K.device, (3,), "up").expand(B, 3), dim=-1)
    if front is not None:
        front = _batched(front, scene.K.dtype, scene.K.device, (3,), "front").expand(B, 3)
        front = F.normalize(front - (front * up).sum(-1, keepdim=True) * up, dim=-1)  # ⊥ up
    forward = 0.5 * (rel.amin(dim=1) + rel.amax(dim=1))                              # bounding-box centre
    behind = BodyBehindCamera("crop_camera: part of the body is behind or beside the scene camera")
    if bool(((forward * R_s[:, 2, :]).sum(-1) <= 0.1 * forward.norm(dim=-1)).any()):
        raise behind
    for step in range(iterations + 1):
        R_c = _look_rotation(forward, _crop_up(forward, up, front))
        p = rel @ R_c.transpose(1, 2)                                                # (B, V, 3) crop camera frame
        z = p[..., 2]
        # a cone of half-angle < ~84°: beyond that the body cannot be framed by a pinhole crop
        if bool((z <= 0.1 * p.norm(dim=-1)).any()):
            raise behind
        uv = p[..., :2] / z[..., None]                                               # normalised image plane
        lo, hi = uv.amin(dim=1), uv.amax(dim=1)
        if step == iterations:
            break
        mid = 0.5 * (lo + hi)
        forward = (torch.cat([mid, torch.ones_like(mid[:, :1])], dim=-1)[:, None, :] @ R_c)[:, 0, :]
    half = torch.maximum(hi, -lo).clamp_min(1e-9)                                    # (B, 2) extent about the axis
    f = torch.minimum(0.5 * width / half[:, 0], 0.5 * height / half[:, 1]) * (1 - 2 * margin)
    K_c = torch.zeros_like(scene.K)
    K_c[:, 0, 0] = f
    K_c[:, 1, 1] = f
    K_c[:, 0, 2] = (width - 1) / 2
    K_c[:, 1, 2] = (height - 1) / 2
    K_c[:, 2, 2] = 1
    w2c = torch.zeros_like(scene.world_to_camera)
    w2c[:, :3, :3] = R_c
    w2c[:, :3, 3] = -(R_c @ center[..., None])[..., 0]
    w2c[:, 3, 3] = 1
    crop = Camera(K=K_c, world_to_camera=w2c, width=width, height=height)
    homography = scene.K @ R_s @ R_c.transpose(1, 2) @ torch.linalg.inv(K_c)
    return crop, homography


def in_frame_corners(scene: Camera, vertices: Tensor, *, near: float = 1e-3) -> Tensor | None:
    """(1, 4, 3) world points (at unit depth) on the corners of the scene-frame rectangle that the body covers: the
    bounding box of the projections of its vertices in front of the camera (camera z > near), cut to the frame.
    Framing these with `crop_camera` frames what the scene camera sees of a body that reaches behind it; the
    triangles that cross the near plane project outwards, so the box runs to the frame's edges where they do.
    None when nothing of the body is in the frame. scene: one camera; vertices: (1, V, 3) world."""
    if scene.batch_size != 1 or vertices.shape[0] != 1:
        raise ValueError("in_frame_corners takes one camera and one body")
    uv, z = scene.project(vertices.to(scene.K.dtype))
    uv = uv[0][z[0] > near]
    if len(uv) == 0:
        return None
    lo = uv.amin(0).clamp(-0.5, None)
    hi = torch.minimum(uv.amax(0), torch.tensor([scene.width - 0.5, scene.height - 0.5], dtype=uv.dtype))
    if not bool((lo < hi).all()):
        return None
    corners = torch.stack([torch.stack([x, y, torch.ones_like(x)]) for x in (lo[0], hi[0]) for y in (lo[1], hi[1])])
    rays = corners @ torch.linalg.inv(scene.K[0]).T                                   # camera frame, z = 1
    R = scene.world_to_camera[0, :3, :3]
    return (rays @ R + scene.center)[None]                                            # Rᵀ·ray + centre


def _crop_up(forward: Tensor, up: Tensor, front: Tensor | None) -> Tensor:
    """The up vector handed to the look rotation: `up`, blended towards `front` as the view nears `up`'s axis
    (weight (1 − sin θ)⁴ with θ the angle between them: 0.0002 at 60°, 0.5 at 0° where `up` alone is undefined).
    A function of body-relative directions only, so a rotated scene gives the same crop, rotated."""
    if front is None:
        return up
    sin = torch.linalg.cross(F.normalize(forward, dim=-1), up, dim=-1).norm(dim=-1, keepdim=True)
    return up + (1 - sin) ** 4 * front


def map_pixels(homography: Tensor, pixels: Tensor) -> tuple[Tensor, Tensor]:
    """Pixels (B, N, 2) or (N, 2) through homographies (B, 3, 3): their images (B, N, 2) and whether they land in
    front (B, N) (positive homogeneous w; the others' xy are meaningless)."""
    q = torch.cat([pixels, torch.ones_like(pixels[..., :1])], -1).to(homography.dtype) @ homography.transpose(-1, -2)
    front = q[..., 2] > 0
    return q[..., :2] / q[..., 2:].where(front[..., None], torch.ones_like(q[..., 2:])), front


def paste(crop_image: Tensor, homography: Tensor, scene_w: int, scene_h: int, *,
          mode: str = "bilinear") -> tuple[Tensor, Tensor]:
    """Resample a crop image into the scene frame.

    crop_image: (B, C, h, w) float, or int labels with mode="nearest"; homography: (B, 3, 3) crop pixel → scene
    pixel (from crop_camera). Returns the image (B, C, scene_h, scene_w), same dtype (zeros outside the crop), and
    the validity mask (B, 1, scene_h, scene_w) bool: scene pixels whose centre maps inside the crop frame.
    Colour uses mode="bilinear" (border-clamped at the crop's edge); labels and depth keys use mode="nearest"
    (which carries inf values through unchanged).
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"paste mode must be 'bilinear' or 'nearest', got {mode!r}")
    B, C, h, w = crop_image.shape
    dtype = crop_image.dtype if crop_image.is_floating_point() else torch.float32
    H_inv = torch.linalg.inv(homography.to(torch.float64)).to(crop_image.device)    # scene pixel → crop pixel
    ys, xs = torch.meshgrid(torch.arange(scene_h, dtype=torch.float64, device=crop_image.device),
                            torch.arange(scene_w, dtype=torch.float64, device=crop_image.device), indexing="ij")
    xy, front = map_pixels(H_inv, torch.stack([xs, ys], dim=-1).reshape(1, -1, 2))   # (B, N, 2), (B, N)
    inside = front & (xy[..., 0] >= -0.5) & (xy[..., 0] <= w - 0.5) & (xy[..., 1] >= -0.5) & (xy[..., 1] <= h - 0.5)
    # align_corners=False: pixel x ↔ normalised (2x + 1) / w - 1
    grid = torch.stack([(2 * xy[..., 0] + 1) / w - 1, (2 * xy[..., 1] + 1) / h - 1], dim=-1)
    grid = grid.where(inside[..., None], torch.full_like(grid, -2.0)).to(dtype).reshape(B, scene_h, scene_w, 2)
    out = F.grid_sample(crop_image.to(dtype), grid, mode=mode, padding_mode="border", align_corners=False)
    valid = inside.reshape(B, 1, scene_h, scene_w)
    out = torch.where(valid, out, torch.zeros_like(out))                             # where, not ×: keeps inf keys
    if not crop_image.is_floating_point():
        out = out.round().to(crop_image.dtype)
    return out, valid
