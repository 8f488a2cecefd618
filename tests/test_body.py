"""neural/body.py and neural/body_convert.py: our LBS against smplx (the oracle), transforms, gradients,
the chumpy-free SMPL .pkl converter and its refusal of foreign pickles, and the errors on bad input."""

import hashlib
import pickle
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation

from neural.__main__ import main
from neural.body import BodyModel, axis_angle_to_matrix, free_body_path
from neural.body_convert import convert_smpl_pickle
from neural.skeleton import JOINT_NAMES, PARENTS

ROOT = Path(__file__).resolve().parents[1]
SMPL_ROOT_PARENT = 4294967295  # how the official files store the root's parent (uint32 -1)


def synthetic_arrays(V=300, num_betas=10, seed=0, pose_blend=True):
    """A random SMPL-format body: a body-sized point cloud, sparse skinning, random shape/pose blend shapes."""
    rng = np.random.default_rng(seed)
    v_template = rng.uniform(-0.5, 0.5, (V, 3)) * [0.6, 1.7, 0.3]
    weights = rng.random((V, 24)) ** 6 * (rng.random((V, 24)) < 0.2)
    weights[np.arange(V), rng.integers(0, 24, V)] += 1.0
    weights /= weights.sum(1, keepdims=True)
    J_regressor = rng.random((24, V)) * (rng.random((24, V)) < 0.05)
    J_regressor[np.arange(24), rng.integers(0, V, 24)] += 1.0
    J_regressor /= J_regressor.sum(1, keepdims=True)
    kintree = np.array([[SMPL_ROOT_PARENT, *PARENTS[1:]], range(24)], dtype=np.uint32)
    return {
        "v_template": v_template, "f": rng.integers(0, V, (2 * V, 3)).astype(np.uint32), "weights": weights,
        "J_regressor": J_regressor, "kintree_table": kintree,
        "shapedirs": rng.normal(0, 0.03, (V, 3, num_betas)),
        "posedirs": rng.normal(0, 0.02, (V, 3, 207)) * pose_blend,
    }


def random_inputs(B, num_betas, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    betas = torch.randn(B, num_betas, generator=g, dtype=dtype)
    pose = torch.randn(B, 24, 3, generator=g, dtype=dtype) * 0.6
    transl = torch.randn(B, 3, generator=g, dtype=dtype)
    return betas, pose, transl


def smplx_forward(arrays, betas, pose, transl):
    """The oracle: smplx.SMPL built from the same arrays in memory; joints[:, :24] are the skeleton."""
    import smplx
    from smplx.utils import Struct

    face_ids = {k: 0 for k in ("nose", "reye", "leye", "rear", "lear")}  # extra joints are not compared
    model = smplx.SMPL(model_path="", data_struct=Struct(**arrays), num_betas=betas.shape[1], dtype=betas.dtype,
                       batch_size=len(pose), vertex_ids=face_ids, use_hands=False, use_feet_keypoints=False)
    out = model(betas=betas, global_orient=pose[:, 0], body_pose=pose[:, 1:].flatten(1), transl=transl)
    return out.vertices.detach(), out.joints[:, :24].detach()


def rest_posed_reference(arrays, betas, pose):
    """rest_posed = shaped + pose blend shapes, in numpy with scipy's rotations (independent of body.py)."""
    betas, pose = betas.numpy(), pose.numpy()
    shaped = arrays["v_template"] + np.einsum("bl,vcl->bvc", betas, arrays["shapedirs"][:, :, :betas.shape[1]])
    R = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(len(pose), 24, 3, 3)
    feature = (R[:, 1:] - np.eye(3)).reshape(len(pose), 207)
    return shaped + np.einsum("bp,vcp->bvc", feature, arrays["posedirs"]), shaped


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_smplx_with_shape_and_pose_blend_shapes(dtype):
    arrays = synthetic_arrays()
    body = BodyModel(arrays=arrays).to(dtype)
    betas, pose, transl = random_inputs(4, 10, dtype=dtype)
    ours = body(betas, pose, transl)
    vertices, joints = smplx_forward(arrays, betas, pose, transl)
    assert ours.vertices.dtype == dtype and ours.vertices.shape == (4, 300, 3)
    assert (ours.vertices - vertices).abs().max() < 1e-5
    assert (ours.joints - joints).abs().max() < 1e-5
    # fewer betas than the file has: the rest are zero
    ours = body(betas[:, :3], pose, transl)
    vertices, joints = smplx_forward(arrays, torch.cat([betas[:, :3], torch.zeros_like(betas[:, 3:])], 1), pose,
                                     transl)
    assert (ours.vertices - vertices).abs().max() < 1e-5
    assert (ours.joints - joints).abs().max() < 1e-5


def test_both_posedirs_layouts_give_the_same_body():
    arrays = synthetic_arrays()
    flat = dict(arrays, posedirs=arrays["posedirs"].reshape(-1, 207).T.copy())
    betas, pose, transl = random_inputs(2, 10)
    a = BodyModel(arrays=arrays, dtype=torch.float64)(betas, pose, transl).vertices
    b = BodyModel(arrays=flat, dtype=torch.float64)(betas, pose, transl).vertices
    assert (a - b).abs().max() < 1e-12


def test_free_body_matches_smplx():
    path = free_body_path()
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    body = BodyModel.load(path, dtype=torch.float64)
    # smplx caps SMPL at 10 shape components: compare on the first 10 of the free body's 16.
    betas, pose, transl = random_inputs(2, 10)
    ours = body(betas, pose, transl)
    arrays["shapedirs"] = arrays["shapedirs"][..., :10]
    if arrays["posedirs"].ndim == 2:  # smplx reads only the SMPL-file layout
        arrays["posedirs"] = arrays["posedirs"].T.reshape(body.num_vertices, 3, 207)
    vertices, joints = smplx_forward(arrays, betas, pose, transl)
    assert (ours.vertices - vertices).abs().max() < 1e-5
    assert (ours.joints - joints).abs().max() < 1e-5
    assert ours.parts.min() >= 2 and ours.parts.max() <= 25
    assert re.fullmatch(rf"V{body.num_vertices}-[0-9a-f]{{12}}", body.fingerprint)


def test_transforms_reproduce_vertices_and_joints():
    arrays = synthetic_arrays()
    body = BodyModel(arrays=arrays, dtype=torch.float64)
    betas, pose, transl = random_inputs(3, 10)
    out = body(betas, pose, transl)
    rest_posed, shaped = rest_posed_reference(arrays, betas, pose)
    assert np.abs(out.shaped.numpy() - shaped).max() < 1e-12
    homogeneous = np.concatenate([rest_posed, np.ones_like(rest_posed[..., :1])], -1)
    skinned = np.einsum("vk,bkij,bvj->bvi", arrays["weights"], out.transforms.numpy(), homogeneous)[..., :3]
    assert np.abs(skinned - out.vertices.numpy()).max() < 1e-10
    # each transform carries its rest joint to the posed joint; rotations are rigid; the root is global_orient
    rest_joints = np.einsum("jv,bvc->bjc", arrays["J_regressor"], shaped)
    T = out.transforms.numpy()
    moved = np.einsum("bjik,bjk->bji", T[..., :3, :3], rest_joints) + T[..., :3, 3]
    assert np.abs(moved - out.joints.numpy()).max() < 1e-10
    assert np.abs(T[..., 3, :] - [0, 0, 0, 1]).max() == 0
    assert np.abs(T[..., :3, :3] @ T[..., :3, :3].swapaxes(-1, -2) - np.eye(3)).max() < 1e-12
    assert np.abs(out.root_rotation.numpy() - Rotation.from_rotvec(pose[:, 0].numpy()).as_matrix()).max() < 1e-12
    assert torch.equal(out.transl, transl)


def test_inverse_blended_transform_maps_posed_vertices_back_to_rest():
    arrays = synthetic_arrays()
    body = BodyModel(arrays=arrays, dtype=torch.float64)
    betas, pose, transl = random_inputs(2, 10)
    out = body(betas, pose, transl)
    blended = torch.einsum("vk,bkij->bvij", out.weights, out.transforms)  # (B, V, 4, 4)
    posed = torch.cat([out.vertices, torch.ones_like(out.vertices[..., :1])], -1)
    back = (torch.linalg.inv(blended) @ posed[..., None])[..., :3, 0]
    rest_posed, _ = rest_posed_reference(arrays, betas, pose)
    assert np.abs(back.numpy() - rest_posed).max() < 1e-9


def test_rodrigues_matches_scipy_including_small_and_large_angles():
    g = torch.Generator().manual_seed(3)
    axes = torch.nn.functional.normalize(torch.randn(7, 3, generator=g, dtype=torch.float64), dim=-1)
    angles = torch.tensor([0.0, 1e-9, 1e-5, 1e-3, 0.7, 3.0, np.pi], dtype=torch.float64)
    r = axes * angles[:, None]
    expected = Rotation.from_rotvec(r.numpy()).as_matrix()
    assert np.abs(axis_angle_to_matrix(r).numpy() - expected).max() < 1e-14
    assert np.abs(axis_angle_to_matrix(r.float()).numpy() - expected).max() < 1e-6


def test_gradients_w_r_t_pose_and_betas_in_float64():
    arrays = synthetic_arrays(V=24, num_betas=3, seed=5)
    body = BodyModel(arrays=arrays, dtype=torch.float64)
    betas, pose, transl = random_inputs(1, 3, seed=6)
    pose[0, 4] = 0.0  # a joint at zero rotation: Rodrigues must stay differentiable there
    betas.requires_grad_(True)
    pose.requires_grad_(True)

    def outputs(betas, pose):
        out = body(betas, pose, transl)
        return out.vertices, out.joints

    assert torch.autograd.gradcheck(outputs, (betas, pose), eps=1e-6, atol=1e-6)


def test_defaults_broadcasting_and_flat_pose():
    arrays = synthetic_arrays()
    body = BodyModel(arrays=arrays, dtype=torch.float64)
    rest = body()  # all zeros: the template in its rest pose, its joints the regressed ones
    assert rest.vertices.shape == (1, 300, 3)
    assert torch.allclose(rest.vertices[0], torch.as_tensor(arrays["v_template"]), atol=1e-12)
    assert torch.allclose(rest.joints[0], torch.as_tensor(arrays["J_regressor"] @ arrays["v_template"]), atol=1e-12)
    betas, pose, transl = random_inputs(3, 10)
    a = body(betas[:1], pose, transl[:1])
    b = body(betas[:1].expand(3, -1), pose.flatten(1), transl[:1].expand(3, -1))
    assert torch.equal(a.vertices, b.vertices)


def test_parts_fingerprint_and_static_fields():
    arrays = synthetic_arrays()
    body = BodyModel(arrays=arrays)
    out = body()
    assert torch.equal(out.parts, torch.as_tensor(arrays["weights"].argmax(1) + 2))
    assert out.faces.dtype == torch.int64 and torch.equal(out.faces, torch.as_tensor(arrays["f"].astype(np.int64)))
    assert out.template.shape == (300, 3) and out.weights.shape == (300, 24)
    sha = hashlib.sha1(arrays["v_template"].astype(np.float32).tobytes()).hexdigest()
    assert body.fingerprint == f"V300-{sha[:12]}"
    parts = np.full(300, 7)
    assert torch.equal(BodyModel(arrays=dict(arrays, parts=parts))().parts, torch.full((300,), 7))
    assert len(JOINT_NAMES) == 24 and JOINT_NAMES[22:] == ("left_hand", "right_hand")


def test_load_npz_in_both_layouts(tmp_path):
    arrays = synthetic_arrays()
    path = tmp_path / "body.npz"
    np.savez(path, **dict(arrays, posedirs=arrays["posedirs"].reshape(-1, 207).T))
    body = BodyModel.load(path)
    assert body.num_vertices == 300 and body.num_betas == 10
    assert body.fingerprint == BodyModel(arrays=arrays).fingerprint
    betas, pose, transl = random_inputs(2, 10, dtype=torch.float32)
    vertices, _ = smplx_forward({k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in arrays.items()},
                                betas, pose, transl)
    assert (body(betas, pose, transl).vertices - vertices).abs().max() < 1e-5


# --- the .pkl converter ------------------------------------------------------------------------------------

def write_fake_smpl_pickle(path, arrays, *, protocol, sparse_format):
    """An official-style SMPL pickle: shapedirs as a chumpy Ch (fake chumpy module), sparse J_regressor."""
    chumpy, chumpy_ch = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:  # what a chumpy Ch pickles: its __dict__ with the array under "x"
        def __init__(self, x):
            self.x, self._dirty_vars, self._make_dense, self._itr = x, {"x"}, False, None

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    chumpy_ch.Ch, chumpy.ch = Ch, chumpy_ch
    sparse = scipy.sparse.csc_matrix if sparse_format == "csc" else scipy.sparse.csr_matrix
    data = dict(arrays, shapedirs=Ch(arrays["shapedirs"]), J_regressor=sparse(arrays["J_regressor"]),
                bs_style="lbs", bs_type="lrotmin", J=arrays["J_regressor"] @ arrays["v_template"])
    sys.modules.update({"chumpy": chumpy, "chumpy.ch": chumpy_ch})
    try:
        path.write_bytes(pickle.dumps(data, protocol=protocol))
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    assert b"chumpy" in path.read_bytes()


@pytest.mark.parametrize("protocol,sparse_format", [(0, "csc"), (2, "csc"), (4, "csr")])
def test_convert_smpl_pickle_without_chumpy(tmp_path, protocol, sparse_format):
    arrays = synthetic_arrays(V=120, seed=2)
    src, dst = tmp_path / "SMPL_NEUTRAL.pkl", tmp_path / "smpl.npz"
    write_fake_smpl_pickle(src, arrays, protocol=protocol, sparse_format=sparse_format)
    assert "chumpy" not in sys.modules
    convert_smpl_pickle(src, dst)
    with np.load(dst, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(arrays)
        assert np.array_equal(npz["J_regressor"], arrays["J_regressor"].astype(np.float32))
        assert np.array_equal(npz["shapedirs"], arrays["shapedirs"].astype(np.float32))
    body, reference = BodyModel.load(dst), BodyModel(arrays=arrays)
    assert body.fingerprint == reference.fingerprint
    betas, pose, transl = random_inputs(2, 10, dtype=torch.float32)
    assert (body(betas, pose, transl).vertices - reference(betas, pose, transl).vertices).abs().max() < 1e-6


@pytest.mark.slow
def test_convert_and_info_commands(tmp_path, capsys):
    arrays = synthetic_arrays(V=60, seed=4)
    src, dst = tmp_path / "model.pkl", tmp_path / "out" / "model.npz"
    write_fake_smpl_pickle(src, arrays, protocol=2, sparse_format="csc")
    fingerprint = BodyModel(arrays=arrays).fingerprint
    assert main(["body", "info", str(src)]) == 0
    assert fingerprint in capsys.readouterr().out
    run = subprocess.run([sys.executable, "-m", "neural", "body", "convert", str(src), str(dst)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "60 vertices" in run.stdout and "10 betas" in run.stdout and fingerprint in run.stdout
    assert main(["body", "info", str(dst)]) == 0
    assert fingerprint in capsys.readouterr().out


def test_converter_refuses_a_pickle_that_calls_os_system(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pkl"
    # {'v_template': os.system('touch <marker>')} written as raw protocol-0 opcodes
    evil.write_bytes(b"(dp0\nVv_template\np1\ncos\nsystem\np2\n(V" + f"touch {marker}".encode() + b"\ntp3\nRp4\ns.")
    with pytest.raises(ValueError, match=r"os\.system") as error:
        convert_smpl_pickle(evil, tmp_path / "out.npz")
    assert str(evil) in str(error.value)
    assert not marker.exists() and not (tmp_path / "out.npz").exists()
    assert main(["body", "convert", str(evil), str(tmp_path / "out.npz")]) == 1


def test_converter_refuses_unknown_classes_and_non_dicts(tmp_path):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"v_template": Rotation.identity()}))
    with pytest.raises(ValueError, match=r"references scipy\.spatial\.transform\.\S*Rotation"):
        convert_smpl_pickle(path, tmp_path / "out.npz")
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="holds a list"):
        convert_smpl_pickle(path, tmp_path / "out.npz")


# --- bad input -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change,culprit", [
    (lambda a: a.pop("posedirs"), r"lacks keys \['posedirs'\]"),
    (lambda a: a.update(weights=a["weights"][:, :23]), r"'weights' has shape \(300, 23\).*24 SMPL joints"),
    (lambda a: a.update(J_regressor=a["J_regressor"].T), r"'J_regressor' has shape \(300, 24\)"),
    (lambda a: a.update(posedirs=a["posedirs"][:, :, :200]), r"'posedirs' has shape \(300, 3, 200\)"),
    (lambda a: a.update(shapedirs=a["shapedirs"][:10]), r"'shapedirs' has shape \(10, 3, 10\)"),
    (lambda a: a["v_template"].__setitem__((5, 1), np.nan), r"'v_template' holds NaN"),
    (lambda a: a["f"].__setitem__((0, 0), 300), r"'f' indexes vertices 0\.\.300"),
    (lambda a: a["kintree_table"].__setitem__((0, 5), 3), r"'kintree_table' row 0 gives parents"),
    (lambda a: a["weights"].__setitem__((7, 0), 5.0), r"'weights' row 7 sums to"),
    (lambda a: a.update(parts=np.zeros(300, int)), r"'parts' holds labels 0\.\.0"),
])
def test_bad_body_files_name_file_and_key(tmp_path, change, culprit):
    arrays = synthetic_arrays()
    change(arrays)
    path = tmp_path / "broken_body.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=culprit) as error:
        BodyModel.load(path)
    assert "broken_body.npz" in str(error.value)


def test_load_refuses_pickles_and_object_arrays(tmp_path):
    pkl = tmp_path / "SMPL_NEUTRAL.pkl"
    pkl.write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"SMPL_NEUTRAL\.pkl is a pickle.*neural body convert"):
        BodyModel.load(pkl)
    arrays = synthetic_arrays()
    path = tmp_path / "sparse.npz"
    np.savez(path, **dict(arrays, J_regressor=np.array(scipy.sparse.csc_matrix(arrays["J_regressor"]), dtype=object)))
    with pytest.raises(ValueError, match=r"sparse\.npz: key 'J_regressor' holds pickled Python objects"):
        BodyModel.load(path)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        BodyModel.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("kwargs,culprit", [
    ({"pose": torch.zeros(1, 22, 3)}, r"pose has 22 joints; the body \(<arrays>\) has 24 SMPL joints"),
    ({"pose": torch.zeros(1, 55, 3)}, r"pose has 55 joints.*has 24 SMPL joints"),
    ({"pose": torch.zeros(1, 66)}, r"pose has 22 joints"),
    ({"pose": torch.zeros(24, 3)}, r"pose has shape \(24, 3\); expected \(B, 24, 3\)"),
    ({"pose": torch.full((2, 24, 3), float("nan"))}, r"pose holds NaN or inf values \(first bad index \(0, 0, 0\)"),
    ({"betas": torch.zeros(1, 16)}, r"betas has 16 columns; the body file <arrays> has 10 shape components"),
    ({"betas": torch.tensor([[0.0, float("inf")]])}, r"betas holds NaN or inf"),
    ({"betas": torch.zeros(10)}, r"betas has shape \(10,\)"),
    ({"transl": torch.zeros(1, 2)}, r"transl has shape \(1, 2\); expected \(B, 3\)"),
    ({"transl": torch.zeros(2, 3), "pose": torch.zeros(3, 24, 3)}, r"transl has batch 2"),
])
def test_bad_forward_inputs_name_the_culprit(kwargs, culprit):
    body = BodyModel(arrays=synthetic_arrays())
    with pytest.raises(ValueError, match=culprit):
        body(**kwargs)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    arrays = synthetic_arrays()
    body = BodyModel(arrays=arrays)
    betas, pose, transl = random_inputs(4, 10, dtype=torch.float32)
    cpu = body(betas, pose, transl)
    gpu = body.to("cuda")(betas.cuda(), pose.cuda(), transl.cuda())
    assert gpu.vertices.device.type == "cuda" and gpu.faces.device.type == "cuda"
    assert (gpu.vertices.cpu() - cpu.vertices).abs().max() < 1e-5
    assert (gpu.joints.cpu() - cpu.joints).abs().max() < 1e-5
    assert (gpu.transforms.cpu() - cpu.transforms).abs().max() < 1e-5


def test_convert_refuses_to_write_over_its_source(tmp_path, capsys):
    arrays = synthetic_arrays(V=60, seed=4)
    src = tmp_path / "model.pkl"
    write_fake_smpl_pickle(src, arrays, protocol=2, sparse_format="csc")
    before = src.read_bytes()
    (tmp_path / "hard.pkl").hardlink_to(src)
    for dst in (src, tmp_path / "hard.pkl", tmp_path / "." / "model.pkl"):
        assert main(["body", "convert", str(src), str(dst)]) == 1
        assert f"the output {dst} is the input {src}" in capsys.readouterr().err
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["hard.pkl", "model.pkl"]


def test_a_damaged_pickle_is_named(tmp_path, capsys):
    bad = tmp_path / "broken.pkl"
    bad.write_bytes(b"\x80\x02}q\x00X\x01\x00\x00\x00a\xff\xff")  # protocol-2 start, then garbage
    assert main(["body", "convert", str(bad), str(tmp_path / "out.npz")]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err and not (tmp_path / "out.npz").exists()
