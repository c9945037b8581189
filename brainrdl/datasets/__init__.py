"""Real data sets read from disk (never downloaded): Kriegeskorte et al. 2008 (92 images)."""
