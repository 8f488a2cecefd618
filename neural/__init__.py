"""3DHumanGAN generator and its geometry: body model, cameras, rasteriser, renderer. No bpy, no training code."""
