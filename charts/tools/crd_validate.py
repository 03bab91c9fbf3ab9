"""Validates objects against CustomResourceDefinitions' schemas, as the API server with
`fieldValidation=Strict` (what kubectl sends) would: the version's openAPIV3Schema
(types, enums, required, patterns, formats left out) checked by `jsonschema`, plus
structural pruning turned into errors: a field the schema does not declare, outside
`x-kubernetes-preserve-unknown-fields` and `additionalProperties`, is refused.

    python3 charts/tools/crd_validate.py --crd CRD.yaml [--crd ...] OBJECTS.yaml...

Exit 1 with one line per problem; objects whose kind no CRD defines are an error too.
Used by tests/e2e/tests/chart.rs for the chart's ServiceMonitor, PodMonitor and
PrometheusRule (Prometheus Operator CRDs) and cert-manager objects.
"""

import sys

import jsonschema
import yaml

# metadata is validated by the API server itself, not the CRD schema.
SKIP_TOP = {"apiVersion", "kind", "metadata"}


def load_crds(paths):
    schemas = {}
    for path in paths:
        for crd in yaml.safe_load_all(open(path)):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def unknown_fields(value, schema, path):
    """Fields the structural schema would prune."""
    if not isinstance(schema, dict):
        return
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    for combinator in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(combinator, []):
            if "properties" in sub:
                yield from unknown_fields(value, sub, path)
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if path == "" and key in SKIP_TOP:
                continue
            if props is not None and key in props:
                yield from unknown_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                yield from unknown_fields(item, extra, f"{path}.{key}")
            elif extra is True or (props is None and extra is None and schema.get("type") != "object"):
                continue
            else:
                yield f"{path}.{key}: unknown field"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}[{i}]")


def strip_formats(schema):
    """`format` is not checked by the API server for CRDs (nor here)."""
    if isinstance(schema, dict):
        return {k: strip_formats(v) for k, v in schema.items() if k != "format"}
    if isinstance(schema, list):
        return [strip_formats(v) for v in schema]
    return schema


def main(argv):
    crds, objects, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--crd":
            crds.append(argv[i + 1])
            i += 2
        else:
            objects.append(argv[i])
            i += 1
    schemas = load_crds(crds)
    problems, checked = [], 0
    for path in objects:
        for obj in yaml.safe_load_all(open(path)):
            if not obj:
                continue
            key = (obj.get("apiVersion"), obj.get("kind"))
            name = f"{path}: {key[1]} {obj.get('metadata', {}).get('name')}"
            schema = schemas.get(key)
            if schema is None:
                problems.append(f"{name}: no CRD defines {key[0]} {key[1]}")
                continue
            checked += 1
            validator = jsonschema.Draft7Validator(strip_formats(schema))
            for error in validator.iter_errors(obj):
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
                problems.append(f"{name}: {where or '.'}: {error.message}")
            problems.extend(f"{name}: {p}" for p in unknown_fields(obj, schema, ""))
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"{checked} object(s) valid")


if __name__ == "__main__":
    main(sys.argv[1:])
