"""neural/frame.py: the numpy-only boundary of the renderer; its one request key tells apart every two requests
that draw differently, however their fields' bytes split."""
import sys

import numpy as np

from neural.frame import Character, FrameRequest, empty_result, length_prefixed, request_key


def _request(names=("a", "b"), seeds=(1, 2), detail=None, psi=0.7) -> FrameRequest:
    K = np.array([[100.0, 0, 32], [0, 100, 32], [0, 0, 1]])
    return FrameRequest(K=K, world_to_camera=np.eye(4), width=64, height=64, detail=detail,
                        characters=tuple(Character(pose=np.zeros((24, 3)), seed=s, psi=psi, name=n)
                                         for n, s in zip(names, seeds)))


def test_length_prefixes_keep_splits_apart():
    assert length_prefixed([b"ab", b"c"]) != length_prefixed([b"a", b"bc"])
    assert length_prefixed([b"a|", b"b"]) != length_prefixed([b"a", b"|b"])  # what a separator alone cannot do


def test_request_key_changes_with_everything_drawn_and_only_with_it():
    base = request_key(_request())
    assert request_key(_request()) == base
    for other in (_request(names=("ab", "")), _request(seeds=(2, 1)), _request(detail=2), _request(psi=0.5)):
        assert request_key(other) != base


def test_the_boundary_imports_no_torch():
    import subprocess

    code = "import sys, neural.frame; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_empty_result_is_transparent_and_infinitely_far():
    empty = empty_result(5, 3)
    assert empty.rgba.shape == (3, 5, 4) and not empty.rgba.any()
    assert np.isinf(empty.depth).all() and (empty.parts == 1).all()
