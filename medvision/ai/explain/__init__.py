"""Saliency: why a model labelled a region (Grad-CAM, integrated gradients, occlusion) and whether the
map passes the model-parameter randomisation check."""
