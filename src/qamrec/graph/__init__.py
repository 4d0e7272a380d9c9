"""The heterogeneous graph: build (from prepared tables) and store (safetensors + JSON)."""
