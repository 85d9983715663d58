#!/usr/bin/env python3
"""Offline checks of rendered Kubernetes manifests (scripts/deploy-validate.sh
renders them with `kubectl kustomize` and runs this in the deploy venv).

    deploy-validate.py schemas NAME=FILE...   validate every object
    deploy-validate.py same-shape CITY=FILE... the cities' overlays differ
                                                only in configuration
    deploy-validate.py wrangler-envs ENV...    each wrangler.toml environment
                                                repeats what it must

Built-in kinds are validated with kubernetes-validate (Kubernetes' own
OpenAPI schemas, bundled in the package), strictly: an unknown field is an
error, as a typo would silently do nothing in a cluster. Custom resources
are validated with jsonschema against their CRDs' schemas kept in
deploy/crds/ (deploy/crds/trim-crd.py), also strictly. A custom kind with
no schema there is reported as SKIPPED, by name, never passed silently.
"""
import copy
import glob
import json
import os
import re
import sys
import tomllib

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The oldest Kubernetes the kit supports (lifecycle.preStop.sleep is on by
# default from 1.30) and a current one.
K8S_VERSIONS = os.environ.get("DEPLOY_K8S_VERSIONS", "1.30.0 1.34.0").split()


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def is_builtin(api_version):
    group = api_version.split("/")[0] if "/" in api_version else ""
    # Core ("v1"), the dot-less groups (apps, batch, policy, autoscaling)
    # and Kubernetes' own *.k8s.io groups.
    return "." not in group or group.endswith(".k8s.io")


def strict(schema):
    """A CRD schema that rejects unknown fields: the API server prunes them
    (a typo in a ScaledObject trigger would vanish without a word), so here
    an object with declared properties and nothing else allowed gets
    additionalProperties: false."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schemas():
    schemas = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy", "crds", "*.json"))):
        with open(path) as f:
            schema = json.load(f)
        gvk = schema["x-kubernetes-group-version-kind"]
        key = (f"{gvk['group']}/{gvk['version']}", gvk["kind"])
        schemas[key] = (os.path.relpath(path, ROOT), strict(schema))
    return schemas


def name_of(doc):
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{doc.get('kind')}/{(ns + '/') if ns else ''}{meta.get('name')}"


def check_shutdown(doc):
    """The kit's one arithmetic rule: the grace period covers the preStop
    sleep, the region core's 10 s drain and a margin."""
    if doc.get("kind") != "Deployment":
        return []
    spec = doc["spec"]["template"]["spec"]
    grace = spec.get("terminationGracePeriodSeconds", 30)
    errors = []
    for c in spec.get("containers", []):
        sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
        if grace < sleep + 10 + 5:
            errors.append(
                f"container {c['name']}: terminationGracePeriodSeconds {grace} < preStop {sleep} s "
                "+ 10 s drain + 5 s margin"
            )
    return errors


def cmd_schemas(args):
    crds = crd_schemas()
    failures, skipped, counted = 0, [], 0
    for arg in args:
        label, path = arg.split("=", 1)
        for doc in load_docs(path):
            counted += 1
            api, kind, who = doc.get("apiVersion", ""), doc.get("kind", ""), name_of(doc)
            errors = check_shutdown(doc)
            if is_builtin(api):
                for version in K8S_VERSIONS:
                    try:
                        kubernetes_validate.validate(doc, version, strict=True)
                    except kubernetes_validate.ValidationError as e:
                        where = "/".join(str(p) for p in e.path)
                        errors.append(f"Kubernetes {version}: {where}: {e.message}")
                    except kubernetes_validate.SchemaNotFoundError:
                        errors.append(f"Kubernetes {version} has no {api} {kind}")
            elif (api, kind) in crds:
                source, schema = crds[(api, kind)]
                for e in jsonschema.Draft7Validator(schema).iter_errors(doc):
                    where = "/".join(str(p) for p in e.absolute_path)
                    errors.append(f"{source}: {where}: {e.message}")
            else:
                skipped.append(f"{label}: {who} ({api}): no schema in deploy/crds/")
                continue
            for e in errors:
                print(f"FAIL {label}: {who}: {e}")
            failures += bool(errors)
    for s in skipped:
        print(f"SKIPPED {s}")
    print(
        f"schemas: {counted} objects, {failures} failing, {len(skipped)} skipped "
        f"(Kubernetes {', '.join(K8S_VERSIONS)}; CRDs: {', '.join(k for _, k in sorted(crds))})"
    )
    return 1 if failures else 0


# --- Overlays differ only in configuration ---------------------------------

HASHED = re.compile(r"^(region-core-config)-[a-z0-9]{10}$")


def configuration_out(doc, city):
    """The doc with everything a city may set replaced by placeholders:
    what is left must be the same in every city."""
    d = copy.deepcopy(doc)
    text = json.dumps(d)
    text = text.replace(f"booking-{city}", "booking-CITY")
    text = text.replace(f'city=\\"{city}\\"', 'city=\\"CITY\\"')
    text = re.sub(r'"city": "[a-z]+"', '"city": "CITY"', text)
    text = re.sub(r"(region-core-config)-[a-z0-9]{10}", r"\1-HASH", text)
    text = re.sub(r'("image": "[^":]+):[^"]+"', r'\1:TAG"', text)
    d = json.loads(text)
    kind = d.get("kind")
    if kind == "ConfigMap":
        # Values are configuration; the set of keys is not.
        d["data"] = {k: "VALUE" for k in d.get("data", {})}
    if kind == "ScaledObject":
        for k in ("minReplicaCount", "maxReplicaCount"):
            d["spec"].pop(k, None)
        for t in d["spec"].get("triggers", []):
            if t.get("type") == "cron":
                t["metadata"] = {k: "SCHEDULE" for k in t["metadata"]}
                t.pop("name", None)
    return d


def diff_paths(a, b, path=""):
    if type(a) is not type(b):
        return [path or "/"]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}/{k}")
            else:
                out += diff_paths(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path} (length {len(a)} vs {len(b)})"]
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in diff_paths(x, y, f"{path}/{i}")]
    return [] if a == b else [path]


def cmd_same_shape(args):
    rendered = {}
    for arg in args:
        city, path = arg.split("=", 1)
        docs = {}
        for doc in load_docs(path):
            d = configuration_out(doc, city)
            docs[(d["kind"], d["metadata"]["name"])] = d
        rendered[city] = docs
    cities = list(rendered)
    first, failures = cities[0], 0
    for other in cities[1:]:
        a, b = rendered[first], rendered[other]
        for key in sorted(set(a) ^ set(b)):
            print(f"FAIL same-shape: {key[0]}/{key[1]} is in only one of {first}, {other}")
            failures += 1
        for key in sorted(set(a) & set(b)):
            for p in diff_paths(a[key], b[key]):
                print(f"FAIL same-shape: {key[0]}/{key[1]}: {p} differs between {first} and {other} "
                      "(not a configuration field: move it to base/ or allow it in configuration_out)")
                failures += 1
    print(f"same-shape: {', '.join(cities)}: {len(rendered[first])} objects each, "
          f"{'differ only in configuration' if not failures else f'{failures} differences'}")
    return 1 if failures else 0


# --- wrangler.toml's environments ------------------------------------------


def cmd_wrangler_envs(envs):
    """Wrangler gives an environment none of the top level's vars or
    Durable Object bindings: a var missing from one would silently take
    the Worker's built-in default there. So every environment must set
    every top-level var (values may differ), bind the same Durable
    Objects, have routes of its own, and keep production's safety
    settings."""
    with open(os.path.join(ROOT, "wrangler.toml"), "rb") as f:
        doc = tomllib.load(f)
    top_vars = set(doc.get("vars", {}))
    top_dos = doc.get("durable_objects", {}).get("bindings", [])
    failures = 0

    def fail(env, msg):
        nonlocal failures
        print(f"FAIL wrangler.toml [env.{env}]: {msg}")
        failures += 1

    for env in envs:
        e = doc.get("env", {}).get(env)
        if e is None:
            fail(env, "missing")
            continue
        ev = e.get("vars", {})
        for name in sorted(top_vars - set(ev)):
            fail(env, f"vars.{name} is set at the top level but not here (vars are not inherited)")
        for name in sorted(set(ev) - top_vars):
            fail(env, f"vars.{name} is not a top-level var (a typo, or document it at the top level)")
        if e.get("durable_objects", {}).get("bindings", []) != top_dos:
            fail(env, "durable_objects.bindings differ from the top level's (they are not inherited)")
        if not e.get("routes"):
            fail(env, "no routes")
        if ev.get("DEV_SIGNIN", "false") != "false":
            fail(env, "DEV_SIGNIN must be \"false\" where the Worker is deployed")
        if ev.get("TRUST_CF_CONNECTING_IP") != "true":
            fail(env, "TRUST_CF_CONNECTING_IP must be \"true\" on Cloudflare")
    print(f"wrangler-envs: {', '.join(envs)}: {'ok' if not failures else f'{failures} problems'}")
    return 1 if failures else 0


COMMANDS = {"schemas": cmd_schemas, "same-shape": cmd_same_shape, "wrangler-envs": cmd_wrangler_envs}


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))


if __name__ == "__main__":
    main()
