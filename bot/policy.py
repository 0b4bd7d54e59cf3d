"""Reading the policy file: the one place the pure policy model meets the disk."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.domain.policy import Policy, PolicyError, policy_from_document

__all__ = ["PolicyError", "load_policy"]


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from None
    if not isinstance(document, dict):
        raise PolicyError(f"policy file {path} must hold a mapping")
    return policy_from_document(document)
