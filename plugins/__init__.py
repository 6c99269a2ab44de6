"""Built-in plugins that steer training."""
