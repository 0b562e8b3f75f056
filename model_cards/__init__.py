"""Model card templates (``polyhead.model_cards``), rendered by ``polyhead.hub``."""
