"""selfology-counters."""
