"""Reproducibility pipeline for DS-FlexiNet (Chen et al., "Improving Acoustic Scene Classification in
Low-Resource Conditions") on TAU Urban Acoustic Scenes 2022 Mobile."""

__version__ = "0.1.0"
