"""The HumanGAN Blender extension."""
