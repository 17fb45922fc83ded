"""The only classes a config can build. Configs name a ``kind``; the rest of the group is keyword arguments.

Nothing is imported by a dotted path read from YAML (configs are data), so a config can never make the runner
execute arbitrary code. A method adds itself here by name.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from salseg.errors import SalsegError

# kind -> "module:Class" (imported lazily so that `salseg --help` stays fast)
DATA_MODULES = {
    "saliency": "salseg.data.datamodule:SaliencyDataModule",
}
MODELS = {
    "region_contrast": "salseg.methods.baselines.module:RegionContrast",
    "menet": "salseg.methods.menet.module:MEnet",
    "gd_classifier": "salseg.methods.gd_saliency.classifier:GDClassifier",
    "gd_saliency": "salseg.methods.gd_saliency.module:GDSaliencyMethod",
    "dcsp": "salseg.methods.dcsp.module:DCSP",
}


class BuildError(SalsegError, ValueError):
    pass


def _load(table: dict[str, str], kind: str, group: str):
    if kind not in table:
        raise BuildError(f"{group}.kind={kind!r} is not a known {group}; known: {', '.join(sorted(table))}")
    module, cls = table[kind].split(":")
    return getattr(importlib.import_module(module), cls)


def _build(table: dict[str, str], spec: dict[str, Any], group: str):
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind is None:
        raise BuildError(f"the {group} config has no 'kind' (one of {', '.join(sorted(table))})")
    cls = _load(table, kind, group)
    params = inspect.signature(cls.__init__).parameters
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [n for n in params if n != "self"]
    unknown = sorted(set(spec) - set(accepted))
    if unknown and not takes_var_kw:
        raise BuildError(f"{group} ({kind}): unknown keys {unknown}; {cls.__name__} accepts {accepted}")
    try:
        return cls(**spec)
    except ValueError as err:
        # a bad config value (e.g. one_of's "model.optimizer must be one of ...") is the user's error: one line,
        # the same text. ValueError subclasses (data and checkpoint errors) keep their own type.
        if type(err) is not ValueError:
            raise
        raise BuildError(str(err)) from err


def build_datamodule(spec: dict[str, Any]):
    return _build(DATA_MODULES, spec, "data")


def build_model(spec: dict[str, Any]):
    return _build(MODELS, spec, "model")


def model_class(kind: str):
    return _load(MODELS, kind, "model")
