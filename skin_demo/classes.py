"""The seven HAM10000 diagnoses: the one place that fixes their order and names, and what we say about them."""

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")

FULL_NAMES = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus",
    "vasc": "Vascular lesion",
}

# Malignant or pre-malignant diagnoses (akiec includes Bowen's disease, an in-situ carcinoma).
MALIGNANT = frozenset({"akiec", "bcc", "mel"})

# Shown in the app, the README and every model card.
DISCLAIMER = ("Research and teaching aid only. Not a medical device and not a diagnosis: "
              "see a dermatologist about any skin lesion that worries you.")


def display_name(code: str) -> str:
    """'Melanoma (mel) · malignant': what a person reads next to a probability."""
    suffix = " · malignant" if code in MALIGNANT else ""
    return f"{FULL_NAMES[code]} ({code}){suffix}"
