import os
import tempfile

# bpy writes into the user's Blender config unless pointed elsewhere; keep tests hermetic.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="humangan-blender-"))
