"""addon/preview.py: the viewport's view becomes the same frame as the camera's, refinement levels arrive coarse to
fine on a worker thread without blocking the caller, Esc-like stops end within a tile, and the drawing code puts
the Combined pass on screen. Headless bpy never calls view_draw itself, so the drawing runs offscreen on Mesa's
software OpenGL (started by a Workbench render, docs/environment.md §Headless Blender testing) with stand-ins for the
engine and context."""

import math
import time
from types import SimpleNamespace

import bpy
import numpy as np
import pytest
from addon_fixtures import add_camera, blank, registered, write_body, write_tiny_model

from addon import frames, passes, preview, scene

__all__ = ["blank", "registered"]

W, H = 64, 48


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("preview")
    body = write_body(folder / "body.npz")
    return {"body": body, "model": write_tiny_model(folder / "tiny.safetensors", body)}


class StandInEngine:
    """What preview.py uses of a RenderEngine; Blender's display transform is not available offscreen."""

    def __init__(self):
        self.preview, self.stats, self.redraws = None, [], 0

    def bind_display_space_shader(self, scene_):
        pass

    def unbind_display_space_shader(self):
        pass

    def update_stats(self, stats, info):
        self.stats.append(info)

    def tag_redraw(self):
        self.redraws += 1


def viewport_through(camera, depsgraph):
    """A stand-in context whose 3D view looks through `camera` (region W × H)."""
    view = SimpleNamespace(window_matrix=camera.calc_matrix_camera(depsgraph, x=W, y=H),
                           view_matrix=camera.matrix_world.inverted())
    return SimpleNamespace(region=SimpleNamespace(width=W, height=H), region_data=view)


def make_scene(blank, files):
    cam = add_camera(blank, location=(0.0, -3.2, 0.9), rotation=(math.radians(90), 0, 0), lens=35.0)
    blank.render.resolution_x, blank.render.resolution_y, blank.render.resolution_percentage = W, H, 100
    blank.humangan.model_file, blank.humangan.device, blank.humangan.preview_scale = str(files["model"]), "CPU", 1.0
    bpy.ops.object.humangan_human_add(body_file=str(files["body"]))
    return cam


def test_viewport_frame_equals_the_camera_frame(blank, files):
    cam = make_scene(blank, files)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    frame = preview.viewport_frame(viewport_through(cam, depsgraph), depsgraph, 1.0)
    reference = scene.read_frame(depsgraph)
    assert np.abs(frame.K - reference.K).max() < 1e-3
    assert np.abs(frame.world_to_camera - reference.world_to_camera).max() < 1e-5
    assert [j.name for j in frame.jobs] == [j.name for j in reference.jobs] == ["Human"]
    half = preview.viewport_frame(viewport_through(cam, depsgraph), depsgraph, 0.5)
    assert (half.width, half.height) == (W // 2, H // 2)


def test_levels_refine_coarse_to_fine_without_blocking(blank, files):
    make_scene(blank, files)
    frame = scene.read_frame(bpy.context.evaluated_depsgraph_get(), rest_joints=frames.rest_joints)
    seen = []

    def render(stride, should_stop):
        time.sleep(0.05)  # slower than the caller's checks below
        out = frames.render_frame(frame, model=files["model"], device="CPU", report=pytest.fail,
                                  should_stop=should_stop, stride=stride)
        seen.append(stride)
        return out

    started = time.perf_counter()
    job = preview.PreviewJob(render).start()
    assert time.perf_counter() - started < 0.04 and job.running and job.take() is None
    job.wait(60)
    assert job.finished == [4, 2, 1] and seen == [4, 2, 1] and job.error is None
    stride, final = job.take()
    assert stride == 1 and job.take() is None  # only the newest level is kept
    full = frames.render_frame(frame, model=files["model"], device="CPU", report=pytest.fail)
    assert np.array_equal(final.rgba, full.rgba)


def test_stop_ends_the_job_within_a_tile(blank, files):
    make_scene(blank, files)
    frame = scene.read_frame(bpy.context.evaluated_depsgraph_get(), rest_joints=frames.rest_joints)
    renderer = frames.get_renderer(files["model"], str(files["body"]), "CPU")
    coarse = sum(renderer.pixels_to_synthesize(frames.fit_betas(request, names, renderer.body.num_betas, pytest.fail),
                                            stride=4) for _, names, request in frame.requests())
    renderer.tile_pixels = -(-coarse // 2)  # level 4 in 2 tiles
    polls = []

    def render(stride, should_stop):
        def counted():
            polls.append(stride)
            if len(polls) == 3:
                job.stop()  # as a new view_update would
            return should_stop()
        return frames.render_frame(frame, model=files["model"], device="CPU", report=pytest.fail,
                                   should_stop=counted, stride=stride)

    try:
        job = preview.PreviewJob(render)
        job.start().wait(60)
    finally:
        renderer.tile_pixels = 65536
    # level 4 is 2 tiles; the stop during level 2's first tile is seen at the next poll
    assert polls == [4, 4, 2] and job.finished == [4] and job.take()[0] == 4 and not job.running


def test_view_draw_puts_the_combined_pass_on_screen_offscreen(blank, files, tmp_path):
    import gpu
    from mathutils import Matrix

    # start Mesa's OpenGL: any Workbench render does it in background mode
    blank.render.engine = "BLENDER_WORKBENCH"
    cam = make_scene(blank, files)
    blank.render.filepath = str(tmp_path / "workbench.png")
    bpy.ops.render.render(write_still=True)
    blank.render.engine = "HUMANGAN"

    stand_in = StandInEngine()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    context = viewport_through(cam, depsgraph)
    preview.view_update(stand_in, context, depsgraph)
    job = stand_in.preview.job
    job.wait(60)
    assert job.finished == [4, 2, 1]
    frame = preview.viewport_frame(context, depsgraph, 1.0, frames.safe_rest_joints)
    result = frames.render_frame(frame, model=files["model"], device="CPU", report=pytest.fail)
    offscreen = gpu.types.GPUOffScreen(W, H, format="RGBA16F")
    with offscreen.bind():
        framebuffer = gpu.state.active_framebuffer_get()
        framebuffer.clear(color=(0.0, 0.0, 0.0, 0.0))
        with gpu.matrix.push_pop(), gpu.matrix.push_pop_projection():
            gpu.matrix.load_matrix(Matrix.Identity(4))
            pixel_space = Matrix.Identity(4)
            pixel_space[0][0], pixel_space[1][1], pixel_space[0][3], pixel_space[1][3] = 2 / W, 2 / H, -1, -1
            gpu.matrix.load_projection_matrix(pixel_space)
            preview.view_draw(stand_in, context, depsgraph)
        drawn = np.array(framebuffer.read_color(0, 0, W, H, 4, 0, "FLOAT").to_list(), np.float32)
    offscreen.free()
    expected = passes.to_passes(result)["Combined"].reshape(H, W, 4)  # row 0 at the bottom, as OpenGL reads
    assert (expected[..., 3] > 0.5).sum() > 100
    assert np.abs(drawn - expected).max() < 4e-3  # half floats
    assert stand_in.stats[-1].startswith("HumanGAN preview")


def test_frame_key_tells_apart_frames_whose_fields_split_differently():
    """The preview's redraw key is the renderer's request key per body file, length-prefixed: two frames that draw
    differently never share it (the old '|'-joined key merged name 'x|' + body file 'y' with 'x' + '|y')."""
    from neural.frame import Character

    def frame(*jobs):
        return scene.SceneFrame(K=np.array([[100.0, 0, 32], [0, 100, 32], [0, 0, 1]]), world_to_camera=np.eye(4),
                                width=64, height=64, problems=(),
                                jobs=tuple(scene.CharacterJob(name=n, body_file=b, character=Character(
                                    pose=np.zeros((24, 3)), seed=s, name=n)) for n, b, s in jobs))

    base = frame(("a|b", "", 1), ("c", "", 2))
    assert preview.frame_key(base) == preview.frame_key(frame(("a|b", "", 1), ("c", "", 2)))
    for other in (frame(("a", "", 1), ("b|c", "", 2)), frame(("a|b", "", 2), ("c", "", 1)),
                  frame(("a|b", "/x.npz", 1), ("c", "", 2))):
        assert preview.frame_key(other) != preview.frame_key(base)
    assert preview.frame_key(frame(("x|", "y", 1))) != preview.frame_key(frame(("x", "|y", 1)))
