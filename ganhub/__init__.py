"""ganhub: a GAN toolkit where every variant is a plugin.

Public API (stable for plugin authors and scripts):
    ganhub.variant   Variant, BaseConfig, API_VERSION, capabilities
    ganhub.registry  get, entries, failures
    ganhub.losses    shared GAN losses and regularisers
    ganhub.folder    load_generator, save_generator (the one folder format)
    ganhub.sample    sample, to_grid, interpolate, style_mix
    ganhub.train     train (the one training loop)
    ganhub.testing   check_variant (the conformance suite)
"""

__version__ = "0.1.0"
