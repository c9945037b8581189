"""Inference on RDM comparisons: bootstrap over stimuli and subjects, noise ceilings."""
