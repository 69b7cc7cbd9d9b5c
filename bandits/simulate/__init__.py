"""``bandits simulate``: a synthetic world with known truth that drives a running service over HTTP.

:mod:`~bandits.simulate.world` holds the truth and its exact values (:mod:`~bandits.simulate.slates`
the same for a page of slots, for ``ccb`` and ``slates`` loops), :mod:`~bandits.simulate.driver`
plays it against the api through :class:`bandits.client.Client`, :mod:`~bandits.simulate.cli` is
the click command. Nothing here imports the service's own modules: it talks HTTP only.
"""
