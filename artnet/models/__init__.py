"""Backbones by name, and ArtNet: one backbone, named softmax heads."""
