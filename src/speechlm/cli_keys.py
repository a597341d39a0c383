"""What the command line says about keys: refusals with a "did you mean", a task's key list, ``--cfg`` order.

Every message here is one line. The key lists come from the composed config (so they never drift from
the YAML), the help texts from :mod:`speechlm.params` and, for task-only keys, from the comment beside
the key in ``task/<name>.yaml`` or ``infer.yaml``.
"""

from __future__ import annotations

import difflib
import re
from typing import Sequence

from speechlm.config import CONFIG_DIR, compose

# Keys every composed config carries that are no user settings.
INTERNAL_KEYS = ("task_fn", "task_name")
# Nested groups shown after the user keys (model architecture last: it is the longest and least touched).
NESTED_LAST = ("checkpoints", "model")
_OVERRIDE_RE = re.compile(r"Could not override '([^']+)'|Key '([^']+)' is not in struct")
_COMMENT_RE = re.compile(r"^([A-Za-z_][\w]*):[^#]*#\s*(.+)$")


def task_names() -> list[str]:
    """The ``task=<name>`` choices (``configs/task/*.yaml``)."""
    return sorted(p.stem for p in (CONFIG_DIR / "task").glob("*.yaml"))


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` — did you mean 'x'?`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


def check_task(overrides: Sequence[str]) -> None:
    """Refuse an unknown ``task=`` in one line that lists the tasks."""
    from speechlm.flags import UsageError

    for o in overrides:
        if o.startswith("task="):
            name = o.split("=", 1)[1].strip("'\"")
            if name not in task_names():
                raise UsageError(f"unknown task '{name}'{did_you_mean(name, task_names())} "
                                 f"(tasks: {', '.join(task_names())})")


def _task_overrides(overrides: Sequence[str]) -> list[str]:
    return [o for o in overrides if o.startswith(("task=", "experiment="))]


def user_keys(config_name: str, overrides: Sequence[str]) -> list[str]:
    """The top-level keys the chosen task declares (its own, its params groups and the shared options)."""
    cfg = compose(config_name, _task_overrides(overrides))
    return sorted(k for k in cfg if k not in INTERNAL_KEYS and k not in NESTED_LAST)


def unknown_key_message(key: str, config_name: str, overrides: Sequence[str]) -> str:
    """'task=X has no key K — did you mean ...? its keys: ...' for a key the task does not declare."""
    if "." in key:
        parent, _, leaf = key.rpartition(".")
        hint = ""
        try:
            from omegaconf import OmegaConf

            node = OmegaConf.select(compose(config_name, _task_overrides(overrides)), parent)
            if node is not None and hasattr(node, "keys"):
                hint = did_you_mean(leaf, [str(k) for k in node.keys()])
                hint = hint.replace("'", f"'{parent}.", 1) if hint else ""
        except Exception:  # noqa: BLE001 - the suggestion is a nicety; the refusal stands without it
            pass
        return (f"there is no key '{key}' in this config{hint} — check the name (`--cfg` prints every key; "
                f"++{key}=<value> adds one to a model config)")
    keys = user_keys(config_name, overrides)
    task = [o for o in overrides if o.startswith("task=")]
    where = task[0] if task else f"{config_name}.yaml"
    return (f"{where} has no key '{key}'{did_you_mean(key, keys)} — its keys: {', '.join(keys)} "
            "(plus model/<area>=<preset> and checkpoints.<slot>=PATH; `--help` explains them)")


def message_from_hydra(e: BaseException, config_name: str, overrides: Sequence[str]) -> str:
    """One line for a Hydra/OmegaConf composition error."""
    msg = re.sub(r"\s+", " ", str(e).strip())
    if "Ambiguous value" in msg:
        arg = re.search(r"argument '([^']+)'", msg)
        what = f"'{arg.group(1)}'" if arg else "a value with commas"
        return (f"{what} is a sweep: add -m to run each value (speechlm -m ...), write key=[a,b] for a list, "
                "or quote it for text")
    m = _OVERRIDE_RE.search(msg)
    if not m:
        return f"bad configuration: {msg}"
    try:
        return unknown_key_message(m.group(1) or m.group(2), config_name, overrides)
    except Exception:  # noqa: BLE001 - the task itself is broken: fall back to Hydra's words
        return f"bad configuration: {msg}"


def check_added_keys(config_name: str, overrides: Sequence[str]) -> None:
    """Refuse ``+key=`` / ``++key=`` for a top-level key the task does not declare (Hydra would add it).

    Dotted keys (``++model.text2semantic.config.dim=64``, ``++trainer.strategy=...``) stay allowed: a
    model or trainer config may take a field its preset does not list.
    """
    from speechlm.flags import UsageError

    added = [o.split("=", 1)[0].lstrip("+") for o in overrides if o.startswith("+") and "=" in o]
    added = [k for k in added if "." not in k and "@" not in k and "/" not in k]
    if not added:
        return
    keys = set(user_keys(config_name, overrides)) | set(NESTED_LAST)
    for key in added:
        if key not in keys:
            raise UsageError(unknown_key_message(key, config_name, overrides))


def _comments() -> dict[str, dict[str, str]]:
    """``{file stem: {key: comment}}`` for the top-level keys of the task files and infer.yaml."""
    out = {}
    for path in [CONFIG_DIR / "infer.yaml", CONFIG_DIR / "train.yaml", *(CONFIG_DIR / "task").glob("*.yaml")]:
        found = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            m = _COMMENT_RE.match(line)
            if m:
                found[m.group(1)] = m.group(2).strip()
        out[path.stem] = found
    return out


def _fmt(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def task_help(config_name: str, overrides: Sequence[str]) -> str:
    """The task's keys, one per line: ``key=default  meaning`` (task keys first, then shared options)."""
    from omegaconf import OmegaConf

    from speechlm.params import LIMITS, PARAMS

    cfg = compose(config_name, _task_overrides(overrides))
    values = OmegaConf.to_container(cfg, resolve=False)
    task = str(cfg.get("task_name", config_name))
    notes = _comments()
    own, shared = notes.get(task, {}), {**notes.get("train", {}), **notes.get("infer", {})}
    rows = []
    for key in user_keys(config_name, overrides):
        spec = {**PARAMS, **LIMITS}.get(key)
        meaning = spec.help + (f" {spec.range_text}" if spec.range_text else "") if spec else \
            own.get(key) or shared.get(key, "")
        rows.append((0 if key in own else 1 if spec else 2, key, _fmt(values[key]), meaning))
    rows.sort()
    width = max(len(f"{k}={v}") for _, k, v, _ in rows) + 2
    lines = [f"task={task}: keys (key=default  meaning); `--cfg` prints the whole config"]
    lines += [f"  {f'{k}={v}':<{width}}{meaning}" for _, k, v, meaning in rows]
    lines.append("  model/<area>=<preset>, checkpoints.<slot>=PATH: which model files and sizes (README: Checkpoints)")
    return "\n".join(lines)


def ordered_yaml(cfg) -> str:
    """``--cfg`` text: the user keys first, then ``checkpoints``, then the model architecture."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=False)
    rest = {k: v for k, v in data.items() if k not in NESTED_LAST and k not in INTERNAL_KEYS}
    head = {**{k: v for k, v in rest.items() if not isinstance(v, dict)}, **rest}  # scalars, then groups
    tail = {k: data[k] for k in (*NESTED_LAST, *INTERNAL_KEYS) if k in data}
    return OmegaConf.to_yaml(OmegaConf.create({**head, **tail}))
