"""FKJ-plattformen: a FHIR R4 health information platform for Norwegian municipalities."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
