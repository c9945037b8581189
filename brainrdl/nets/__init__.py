"""Networks: layer taps (forward hooks by module path), small reference models, published networks
loaded by spec with their preprocessing (``loading``) and their default layers (``layers``)."""
