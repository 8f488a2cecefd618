"""addon/engine.py through real bpy renders (tiny random-weight model, 216-vertex box body): F12 passes against
the renderer called directly and against Blender's own projection, a 5-frame animation whose frames differ
exactly where the pose does, cancellation within one tile, and every error reported by name while the other
characters still render."""

import math

import bpy
import numpy as np
import pytest
from addon_fixtures import add_camera, blank, blended_body_arrays, registered, write_body, write_tiny_model
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector
from PIL import Image

from addon import engine, frames, rig, scene
from addon.passes import srgb_to_linear
from commands.addon_demo import set_format
from neural.renderer import Renderer, default_model_path

__all__ = ["blank", "registered"]

W, H = 120, 90


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine")
    body = write_body(folder / "body.npz")
    other = blended_body_arrays()
    other["v_template"] = other["v_template"] * 1.1
    return {"body": body, "model": write_tiny_model(folder / "tiny.safetensors", body),
            "other_body": write_body(folder / "other.npz", other), "folder": folder}


def make_scene(scene_, files, name="Human", x=0.0):
    """A human at x in front of a camera framing it, the tiny model, Standard view transform (exact colours)."""
    if scene_.camera is None:
        add_camera(scene_, location=(0.0, -3.2, 0.9), rotation=(math.radians(90), 0, 0), lens=35.0)
        scene_.render.engine = "HUMANGAN"
        scene_.render.resolution_x, scene_.render.resolution_y, scene_.render.resolution_percentage = W, H, 100
        scene_.view_settings.view_transform = "Standard"
        scene_.render.dither_intensity = 0.0
        scene_.humangan.model_file = str(files["model"])
        scene_.humangan.device = "CPU"
    bpy.context.scene.cursor.location = (x, 0, 0)
    bpy.ops.object.humangan_human_add(body_file=str(files["body"]))
    arm = bpy.context.active_object
    arm.name = name
    return arm


def read_exr(path):
    """All passes of a multilayer EXR, via the OpenImageIO that ships with bpy: {"Combined": (H, W, 4), ...}."""
    import sys

    site = bpy.utils.system_resource("PYTHON") + "/lib/python3.11/site-packages"
    if site not in sys.path:
        sys.path.append(site)
    import OpenImageIO as oiio

    image = oiio.ImageInput.open(str(path))
    passes, index = {}, 0
    while image.seek_subimage(index, 0):
        spec = image.spec()
        pixels = image.read_image(index, 0, 0, spec.nchannels, "float")
        for c, channel in enumerate(spec.channelnames):
            layer, name, _ = channel.split(".")
            passes.setdefault(name, []).append(pixels[..., c])
        index += 1
    image.close()
    return {k: np.stack(v, -1) for k, v in passes.items()}


def test_still_passes_match_the_renderer_and_blenders_projection(blank, files, tmp_path):
    arm = make_scene(blank, files)
    blank.view_layers[0].use_pass_z = True
    set_format(blank.render.image_settings, "OPEN_EXR_MULTILAYER", "32")  # Blender 4.5 and 5.0
    blank.render.filepath = str(tmp_path / "still.exr")
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    passes = read_exr(tmp_path / "still.exr")
    assert set(passes) >= {"Combined", "Depth", "Body Part"} and engine.LAST_REPORTS == []
    # the same frame straight through neural.Renderer (row 0 at the top, straight alpha, sRGB)
    frame = scene.read_frame(bpy.context.evaluated_depsgraph_get(), rest_joints=frames.rest_joints)
    _, names, request = frame.requests()[0]
    renderer = Renderer(model_path=files["model"], body_path=files["body"], device="cpu")
    direct = renderer.render(frames.fit_betas(request, names, renderer.body.num_betas, pytest.fail))
    # files hold the top row first, so an upright image means the engine flipped rows into Blender's layout
    alpha = direct.rgba[..., 3:]
    expected = np.concatenate([srgb_to_linear(direct.rgba[..., :3]) * alpha, alpha], -1)
    assert np.abs(passes["Combined"] - expected).max() < 1e-5
    parts, depth = passes["Body Part"][..., 0], passes["Depth"][..., 0]
    assert np.array_equal(parts, direct.parts.astype(np.float32) - 1)
    body = parts > 0
    assert body.sum() > 200 and np.all(depth[~body] == 1e10)
    # Blender's own projection of the head box's front centre lands on the head part (index 15 + 1) at its depth
    A = np.array(arm.matrix_world)
    head_front = A[:3, :3] @ np.array([0.0, 0.66, 0.09]) + A[:3, 3]
    ndc = world_to_camera_view(blank, blank.camera, Vector(head_front))
    col, row = int(ndc.x * W), int((1 - ndc.y) * H)
    assert parts[row, col] == 16
    assert depth[row, col] == pytest.approx(ndc.z, abs=0.02)


def test_animation_frames_differ_exactly_where_the_pose_does(blank, files, tmp_path):
    arm = make_scene(blank, files)
    info = rig.read_rig(arm)
    poses = {"A": np.zeros((24, 3)), "B": np.zeros((24, 3)), "C": np.zeros((24, 3))}
    poses["B"][16] = (0, 0, -1.2)  # left arm down
    poses["C"][1] = (-0.8, 0, 0)   # left leg forward
    sequence = ["A", "B", "A", "C", "C"]
    for f, key in enumerate(sequence, start=1):
        rig.set_pose(arm, info, poses[key], np.zeros(3))
        for name in info.bones:
            arm.keyframe_insert(f'pose.bones["{name}"].rotation_quaternion', frame=f)
    blank.frame_start, blank.frame_end = 1, 5
    blank.render.image_settings.file_format = "PNG"
    blank.render.image_settings.color_mode = "RGBA"
    blank.render.filepath = str(tmp_path / "frame_")
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    images = [np.asarray(Image.open(tmp_path / f"frame_{f:04d}.png"), dtype=np.int16) for f in range(1, 6)]
    assert all(im.shape == (H, W, 4) for im in images)
    same = lambda a, b: np.array_equal(images[a], images[b])
    assert same(0, 2) and same(3, 4)
    assert not same(0, 1) and not same(1, 3) and not same(0, 3)
    assert (images[0][..., 3] > 0).sum() > 200


def test_escape_in_an_animation_stops_within_a_tile_and_keeps_earlier_frames(blank, files, tmp_path, monkeypatch):
    arm = make_scene(blank, files)
    info = rig.read_rig(arm)
    for f, angle in ((1, 0.0), (2, -1.2), (3, 0.6)):
        pose = np.zeros((24, 3))
        pose[16] = (0, 0, angle)
        rig.set_pose(arm, info, pose, np.zeros(3))
        for name in info.bones:
            arm.keyframe_insert(f'pose.bones["{name}"].rotation_quaternion', frame=f)
    blank.frame_start, blank.frame_end = 1, 3
    blank.render.image_settings.file_format = "PNG"
    blank.render.filepath = str(tmp_path / "reference" / "frame_")
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    renderer = frames.get_renderer(files["model"], str(files["body"]), "CPU")
    renderer.tile_pixels = 64  # the tiny crop's shown pixels in several tiles
    polls, progress, tiles = {}, {}, {}
    render_frame = engine.render_frame

    def escaping(frame, *, should_stop, on_progress, **kwargs):
        """Esc during frame 3 after one tile: the engine's should_stop (RenderEngine.test_break) turns true."""
        current = blank.frame_current
        count = sum(renderer.pixels_to_synthesize(frames.fit_betas(request, names, renderer.body.num_betas, pytest.fail))
                for _, names, request in frame.requests())
        tiles[current] = -(-count // renderer.tile_pixels)

        def stop():
            polls[current] = polls.get(current, 0) + 1
            return should_stop() or (current == 3 and polls[current] > 1)

        def progressed(value):
            progress.setdefault(current, []).append(value)
            on_progress(value)

        return render_frame(frame, should_stop=stop, on_progress=progressed, **kwargs)

    monkeypatch.setattr(engine, "render_frame", escaping)
    blank.render.filepath = str(tmp_path / "escaped" / "frame_")
    try:
        bpy.ops.render.render(animation=True)
    finally:
        renderer.tile_pixels = 65536
    assert tiles[1] >= 3 and progress[1] == pytest.approx([k / tiles[1] for k in range(1, tiles[1] + 1)])
    assert progress[3] == pytest.approx([1 / tiles[3]])
    assert polls[3] == 2  # stopped at the first check after one tile
    for f in (1, 2):  # frames written before Esc are untouched (Blender skips writing the interrupted frame when
        # its own break flag is set, which a headless process cannot raise)
        name = f"frame_{f:04d}.png"  # (the files' metadata hold render times: compare pixels)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "escaped" / name)),
                              np.asarray(Image.open(tmp_path / "reference" / name)))
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "reference" / "frame_0001.png")),
                              np.asarray(Image.open(tmp_path / "reference" / "frame_0002.png")))


def test_cancel_stops_within_one_tile(blank, files):
    make_scene(blank, files)
    frame = scene.read_frame(bpy.context.evaluated_depsgraph_get(), rest_joints=frames.rest_joints)
    renderer = frames.get_renderer(files["model"], str(files["body"]), "CPU")
    renderer.tile_pixels = 64  # the tiny crop's shown pixels in several tiles
    tiles = -(-sum(renderer.pixels_to_synthesize(frames.fit_betas(request, names, renderer.body.num_betas, pytest.fail))
                for _, names, request in frame.requests()) // 64)
    polls, progress = [], []

    def should_stop():
        polls.append(1)
        return len(polls) >= 3

    try:
        out = frames.render_frame(frame, model=files["model"], device="CPU", report=pytest.fail,
                                  should_stop=should_stop, on_progress=progress.append)
    finally:
        renderer.tile_pixels = 65536
    assert tiles >= 3 and out is None and len(polls) == 3 and progress == pytest.approx([1 / tiles, 2 / tiles])


def test_errors_are_reported_by_name_and_the_others_render(blank, files, tmp_path, capfd):
    make_scene(blank, files, name="Good")
    wrong = make_scene(blank, files, name="WrongBody", x=0.6)
    wrong.humangan.body_file = str(files["other_body"])
    missing = make_scene(blank, files, name="MissingBody", x=-0.6)
    missing.humangan.body_file = str(tmp_path / "nowhere.npz")
    rigify = bpy.data.objects.new("Rigify", bpy.data.armatures.new("Rigify"))
    blank.collection.objects.link(rigify)
    rigify.humangan.enabled = True
    blank.render.filepath = str(tmp_path / "errors.png")
    # a frame without every character asked for fails as Blender's engines fail one: an error, no file written
    with pytest.raises(RuntimeError) as raised:
        bpy.ops.render.render(write_still=True)
    assert not (tmp_path / "errors.png").exists()
    for reports in ("\n".join(engine.LAST_REPORTS), str(raised.value)):
        assert "'Rigify'" in reports and "not an SMPL rig" in reports
        assert "'MissingBody'" in reports and "nowhere.npz does not exist" in reports
        assert "'WrongBody'" in reports and "other.npz" in reports and "was trained on" in reports
    assert "Error: HumanGAN: character 'Rigify'" in capfd.readouterr().out  # what the Info bar shows
    bpy.data.images["Render Result"].save_render(filepath=str(tmp_path / "shown.png"))  # what F12 shows
    image = np.asarray(Image.open(tmp_path / "shown.png"))
    assert (image[..., 3] > 0).sum() > 200  # 'Good' rendered
    # no model file set: the default model, or (until one ships) an error saying so
    blank.humangan.model_file = ""
    with pytest.raises(RuntimeError):
        bpy.ops.render.render(write_still=True)
    if default_model_path().is_file():
        # the default model loads; it is made for the free body, so the test's body is refused by name
        assert any("'Good'" in r and "was trained on" in r for r in engine.LAST_REPORTS), engine.LAST_REPORTS
        assert not any("default model" in r and "does not exist" in r for r in engine.LAST_REPORTS)
    else:
        assert any("default model" in r and "'Good'" in r for r in engine.LAST_REPORTS), engine.LAST_REPORTS
    # a missing model, then a file that is not a model: reported with the file's name, no frame written
    for bad, text in ((tmp_path / "absent.safetensors", "does not exist"), (files["body"], "body.npz")):
        blank.humangan.model_file = str(bad)
        with pytest.raises(RuntimeError, match=text):
            bpy.ops.render.render(write_still=True)
        assert any(text in r and "'Good'" in r for r in engine.LAST_REPORTS), engine.LAST_REPORTS
        assert not (tmp_path / "errors.png").exists()
        # Blender's words: the setting to change, not the command line's flag; the frame counts as failed
        good = [r for r in engine.LAST_REPORTS if "'Good'" in r]
        assert good and all("Render Properties > HumanGAN > Model" in r and "--model" not in r for r in good), good
        assert set(good) <= set(engine.LAST_FAILURES)


def test_film_transparent_off_composites_over_the_world_colour_as_blenders_engines(blank, files, tmp_path):
    make_scene(blank, files)
    set_format(blank.render.image_settings, "OPEN_EXR_MULTILAYER", "32")  # Blender 4.5 and 5.0
    blank.render.filepath = str(tmp_path / "clear.exr")
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    clear = read_exr(tmp_path / "clear.exr")["Combined"]
    world = bpy.data.worlds.new("World")
    world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (0.2, 0.4, 0.6, 1.0)
    background.inputs["Strength"].default_value = 0.5
    blank.world = world
    blank.render.film_transparent = False
    blank.render.filepath = str(tmp_path / "opaque.exr")
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    opaque = read_exr(tmp_path / "opaque.exr")["Combined"]
    alpha = clear[..., 3:]
    assert (alpha == 0).mean() > 0.5 and (alpha == 1).sum() > 100
    np.testing.assert_allclose(opaque[..., 3], 1.0)
    expected = clear[..., :3] + (1 - alpha) * np.array([0.1, 0.2, 0.3], np.float32)  # colour × strength, linear
    np.testing.assert_allclose(opaque[..., :3], expected, atol=1e-5)
    blank.world = None  # no world: black behind the people, still opaque
    blank.render.filepath = str(tmp_path / "black.exr")
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    black = read_exr(tmp_path / "black.exr")["Combined"]
    np.testing.assert_allclose(black[..., :3], clear[..., :3], atol=1e-6)
    np.testing.assert_allclose(black[..., 3], 1.0)


def test_a_frame_with_a_failed_character_stops_a_plain_animation_there_naming_it(blank, files, tmp_path):
    """What Blender's own engines do with a frame they cannot render: the frames before it are written, no file
    for it, and bpy.ops.render.render raises with the reason (a script exits non-zero, Ctrl+F12 stops)."""
    make_scene(blank, files, name="Good")
    late = make_scene(blank, files, name="Late", x=0.6)
    late.humangan.body_file = str(tmp_path / "missing.npz")
    for frame, hidden in ((1, True), (2, False)):  # the broken character enters at frame 2
        late.hide_render = hidden
        late.keyframe_insert("hide_render", frame=frame)
    blank.frame_start, blank.frame_end = 1, 3
    blank.render.image_settings.file_format = "PNG"
    blank.render.filepath = str(tmp_path / "frame_")
    with pytest.raises(RuntimeError, match="'Late'.*missing.npz does not exist"):
        bpy.ops.render.render(animation=True)
    assert sorted(p.name for p in tmp_path.glob("frame_*")) == ["frame_0001.png"]
    assert (np.asarray(Image.open(tmp_path / "frame_0001.png"))[..., 3] > 0).sum() > 200
