"""The core: evalsets, the quality estimator and its encoders, tier selection, metrics, decisions,
errors and files on disk. Imports nothing from the layers above (llm, routing, optimization, ...)."""
