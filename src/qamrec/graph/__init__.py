"""The heterogeneous graph: build (from prepared tables) and store (safetensors + JSON); at MovieLens-32M
scale, ``csr`` (one CSC per relation, memory-mapped), ``sampler`` (neighbour sampling for PyG's loaders)
and ``featurestore`` (PyG FeatureStore / GraphStore over it)."""
