"""skin_demo: explainable skin-lesion classification on HAM10000 (research and teaching aid, not a diagnosis).

Layout, in the direction imports go: `training` (data, backbones, training, evaluation, cards, export)
-> `serving` (registry, model loading, inference, the service and the UI) -> `explain` (LIME,
Grad-CAM) -> the shared basics here (classes, images, metrics, model_folder, paths). `bench`
measures both halves; `__main__` is the command line.
"""

from .classes import CLASSES, DISCLAIMER, FULL_NAMES, MALIGNANT, display_name

__all__ = ["CLASSES", "DISCLAIMER", "FULL_NAMES", "MALIGNANT", "display_name"]
