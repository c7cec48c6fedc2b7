"""Inpainting: filling a region of an image with plausible tissue (a 2.5D gated U-Net trained as a GAN).

``holes`` (the holes users make), ``network`` (generator, discriminator, compositing), ``data``
(scaling by the voided image, training samples), ``metrics`` (masked PSNR, MAE, SSIM, texture,
through-plane consistency), ``train`` (the training script and the package it writes)."""
