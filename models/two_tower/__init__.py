"""Two-tower retrieval in PyTorch: model, training data, training loop (in process or
on Ray Train), and the candidate generator that serves it through an ANN index."""
