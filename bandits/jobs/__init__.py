"""Jobs run by ``bandits worker`` (or in-process by ``bandits evaluate``): evaluations first."""
