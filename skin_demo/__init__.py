"""skin_demo: explainable skin-lesion classification on HAM10000 (research and teaching aid, not a diagnosis)."""

from .classes import CLASSES, FULL_NAMES, MALIGNANT, display_name

__all__ = ["CLASSES", "FULL_NAMES", "MALIGNANT", "display_name"]
