#!/usr/bin/env python3
"""Trims an operator's CustomResourceDefinition to what validation needs.

    trim-crd.py <crd.yaml> <source note> > deploy/crds/<group>_<kind>.json

Keeps the openAPIV3Schema of the storage version and drops every
`description` (they are most of a CRD's bytes; the upstream file has
them). The source note (upstream repository, tag, path) goes into the
schema's `$comment`, so a reader knows where to refresh it from.
scripts/deploy-validate.sh validates the rendered custom resources
against these files with jsonschema, offline.
"""
import json
import sys

import yaml


def strip_descriptions(node):
    if isinstance(node, dict):
        # A property may itself be called "description" (inside
        # "properties"): only drop the annotation, never a field's schema.
        return {
            k: strip_descriptions(v)
            for k, v in node.items()
            if not (k == "description" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def main():
    path, note = sys.argv[1], sys.argv[2]
    with open(path) as f:
        crd = next(d for d in yaml.safe_load_all(f) if d)
    spec = crd["spec"]
    version = next(v for v in spec["versions"] if v.get("storage"))
    schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
    out = {
        "$comment": f"{spec['names']['kind']} ({spec['group']}/{version['name']}) from {note}; "
        "descriptions removed by deploy/crds/trim-crd.py",
        "x-kubernetes-group-version-kind": {
            "group": spec["group"],
            "version": version["name"],
            "kind": spec["names"]["kind"],
        },
        **schema,
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
