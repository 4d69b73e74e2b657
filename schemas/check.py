#!/usr/bin/env python3
"""Validates kscript's JSON output against one of these schemas (JSON Schema draft 2020-12).

    python3 schemas/check.py schemas/run.v1.json --lines < stream.jsonl
    python3 schemas/check.py schemas/tree.v1.json < tree.json

Reads stdin: with --lines, one JSON document per line (kscript run --output json), else one
document. Checks the schema itself first. Prints each violation and exits 1 if there is any.
The tests run it (tests/cli/json.rs); it needs Python's `jsonschema` (PyPI), which .ci/run
installs.
"""
import json
import sys

import jsonschema


def main() -> int:
    schema_path = sys.argv[1]
    lines = "--lines" in sys.argv[2:]
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    text = sys.stdin.read()
    docs = [(i + 1, line) for i, line in enumerate(text.splitlines())] if lines else [(1, text)]
    if lines and not docs:
        print("no lines to check", file=sys.stderr)
        return 1
    bad = 0
    for number, doc in docs:
        try:
            value = json.loads(doc)
        except json.JSONDecodeError as e:
            print(f"line {number}: not JSON: {e}: {doc[:200]}", file=sys.stderr)
            bad += 1
            continue
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in error.absolute_path) or "(document)"
            # oneOf over event types: name the branch that the object's type picks.
            detail = error.message
            if error.validator == "oneOf" and isinstance(value, dict):
                branch = schema.get("$defs", {}).get(value.get("type"))
                if branch is not None:
                    sub = jsonschema.Draft202012Validator({**branch, "$defs": schema["$defs"]})
                    detail = "; ".join(e.message for e in sub.iter_errors(value)) or detail
            print(f"line {number}: {where}: {detail}: {doc[:200]}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
