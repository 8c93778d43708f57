"""The load-test harness behind `wa-sender loadtest` (docs/performance.md)."""
