"""ganhub: a GAN toolkit where every variant is a plugin.

Public API (stable for plugin authors and scripts):
    ganhub.variant      Variant, BaseConfig, bounded, API_VERSION, capabilities (the plugin contract)
    ganhub.registry     get, entries, failures
    ganhub.losses       shared GAN losses and regularisers; ganhub.nets: shared network blocks
    ganhub.step         PhaseRunner, make_optimizers: one training iteration (the trainer and the suite share it)
    ganhub.run          RunSpec (what a run is; .command() renders the reproducing command) and RunFolder
                        (the only reader/writer of config.json, weights, checkpoint, log, metrics)
    ganhub.train        train / train_spec (the one training loop) and its Event stream
    ganhub.source       load_generator: a run folder, bundled weights name or Hub repo id -> generator
    ganhub.sample       sample, class_grid, write_samples, to_grid, interpolate, style_mix
    ganhub.precision    auto | bf16 | fp32; ganhub.distributed: torchrun (World, broadcast, average_grads)
    ganhub.testing      check_variant (the conformance suite)

Modules are layered (tests/test_imports.py keeps it so, imports inside functions included):
errors < variant < registry < device/precision/distributed/augment < data/losses/nets < run < step < sample
< train < hub < source < extractors/metrics < testing < cli; app.py on top.
"""

__version__ = "0.1.0"
