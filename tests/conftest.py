import os
import tempfile

import pytest

# bpy writes into the user's Blender config unless pointed elsewhere; keep tests hermetic.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="humangan-blender-"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and far faster than on two oversubscribed ones on a shared CPU.
    A module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
