"""Engine adapters: thin wiring that keeps transforms/ state in an engine and connects sources and sinks."""
