"""Training 3DHumanGAN generators from 2D photo collections: data, discriminator, losses, loop, metrics."""
