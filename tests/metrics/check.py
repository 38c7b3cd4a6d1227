"""Parses a skylan /metrics page read from stdin with Prometheus' own Python client.

Usage: check.py prometheus|openmetrics < page

Both of the client's parsers are used as they are (the OpenMetrics one is strict: it
refuses a page without `# EOF`, a counter sample without `_total`, a family declared
twice). On top, every family must have help text and a type other than `unknown`.
Prints the families as JSON ({name: {"type", "samples": [[name, labels, value]]}}) for
the Rust test to look into; exits non-zero with the parser's message on any fault.
"""
import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus


def main():
    fmt = sys.argv[1]
    text = sys.stdin.read()
    parse = {"prometheus": parse_prometheus, "openmetrics": parse_openmetrics}[fmt]
    out = {}
    for family in parse(text):
        if family.name in out:
            sys.exit(f"family {family.name} appears twice")
        if not family.documentation:
            sys.exit(f"family {family.name} has no HELP")
        if family.type not in ("counter", "gauge"):
            sys.exit(f"family {family.name} has type {family.type}")
        out[family.name] = {
            "type": family.type,
            "samples": [[s.name, s.labels, s.value] for s in family.samples],
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
