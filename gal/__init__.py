"""gal: generative active learning for text-to-image personalization (Zhang et al., ACM MM 2024)."""

__version__ = "0.1.0"
