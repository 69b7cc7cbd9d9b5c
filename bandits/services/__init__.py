"""What the api does, without HTTP: decisions, rewards, loop administration."""
