"""makemore's framework-free parts: words and splits (data.py), recipes (config.py), torch's RNG in numpy (torch_rng.py)."""
