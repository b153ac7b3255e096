"""Label-free validators, one file each, by name: ``VALIDATORS.get("im")`` (``normda.validators.base``)."""
from normda.validators.base import VALIDATORS, Outputs, Validator

__all__ = ["VALIDATORS", "Outputs", "Validator"]
