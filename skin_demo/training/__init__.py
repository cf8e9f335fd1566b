"""Training: the data split and input pipeline, backbones, training, calibration, OOD fitting, evaluation, cards, export, publishing."""
