"""Params are data, not code, under `dvc exp run -S` too.

DVC composes conf/ with Hydra and resolves the result (`OmegaConf.resolve`) before it writes
params.yaml, so `-S 'data.source=${oc.env:SECRET}'` would write the secret into params.yaml (and
the experiment's commit) before any stage could refuse it. DVC imports the modules of the
`hydra_plugins` package under its `hydra.plugins_path` (the repository root) before composing;
this one makes that resolution refuse any interpolation or resolver, naming the key
(`ul.common.config_checks.refuse_interpolations`, the check every params file gets), so nothing is resolved.
"""

from omegaconf import OmegaConf

from ul.common.config_checks import refuse_interpolations

_resolve = OmegaConf.resolve


def _resolve_data_only(cfg) -> None:
    refuse_interpolations(cfg)
    _resolve(cfg)


OmegaConf.resolve = _resolve_data_only
