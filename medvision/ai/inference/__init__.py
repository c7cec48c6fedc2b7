"""The stages of inference, in the order :func:`medvision.ai.engine.infer_job` runs them:
``prepare`` (the networks, the device, the region, the model's input), ``run`` (the network whole or
by sliding windows, test-time augmentation, out-of-memory fallback, cancel), ``invert`` (the output
back onto the image's grid: labels, the chosen class's probability, uncertainty), ``postprocess``
(largest component, hole filling) and ``result``. ``brainchop`` runs brainchop's own pipeline for
its models (conform, pre-model, crop, MeshNet)."""
