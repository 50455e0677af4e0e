//! End-to-end tests of the whole shop live in `tests/e2e/`: the three real
//! binaries, configured by environment as in a container, observed from the
//! outside (OTLP traces, Prometheus metrics, a real Prometheus server).
