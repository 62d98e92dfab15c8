"""Data contracts: device models compiled into fast validators, units normalised,
model files imported from W3C WoT, DTDL v3 and YAML, and the model registry."""

from trellis.contracts.compiled import Contract, ContractError, compile_model, contract_of
from trellis.contracts.units import UnknownUnitError, canonical_unit, conversion

__all__ = [
    "Contract",
    "ContractError",
    "UnknownUnitError",
    "canonical_unit",
    "compile_model",
    "contract_of",
    "conversion",
]
