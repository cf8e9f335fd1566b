"""Explanations of any image-batch -> probabilities function: LIME (fast), Grad-CAM, and how faithful they are."""
