"""ganhub: a GAN toolkit where every variant is a plugin.

Public API (stable for plugin authors and scripts):
    ganhub.variant   Variant, BaseConfig, API_VERSION, capabilities
    ganhub.registry  get, entries, failures
    ganhub.losses    shared GAN losses and regularisers
    ganhub.run       the run folder: config.json, weights, checkpoint, log (the one folder format)
    ganhub.source    load_generator: a run folder, bundled weights name or Hub repo id -> generator
    ganhub.sample    sample, to_grid, interpolate, style_mix
    ganhub.train     train (the one training loop)
    ganhub.testing   check_variant (the conformance suite)
"""

__version__ = "0.1.0"
