"""asyncwasm: a WebAssembly runtime for async Python."""
