"""Networks: layer taps (forward hooks by module path) and small reference models."""
