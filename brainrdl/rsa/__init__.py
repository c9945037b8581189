"""The RDM engine and RDM comparisons: distances, cross-validated distances, ranks.

Works on rsatoolbox objects (same numbers as ``rsatoolbox.rdm``) and on torch tensors
(differentiable, any device). Depends on nothing else in brainrdl but the shared validation
vocabulary.
"""
