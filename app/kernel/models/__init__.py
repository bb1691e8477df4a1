"""Models: the registry of providers and models, discovery, the catalogue, downloads, GGUF headers."""
