"""Explanations of any image-batch -> probabilities function: LIME (fast, coarse to fine), Grad-CAM, how
faithful they are, and the pictures (overlay.py: on the uploaded image, numbered regions, legend)."""
