"""Built-in observers: plugins that only watch (metrics, recorders, plots, progress)."""
