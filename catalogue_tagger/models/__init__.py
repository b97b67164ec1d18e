"""Pretrained taggers: specs, torch modules, and the converter that produced their weights."""
