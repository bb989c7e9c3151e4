"""Render a kustomization (deploy/k8s/) in Python: the subset of kustomize the manifests use.

`kubectl kustomize deploy/k8s/overlays/production` (or `kustomize build`) is what a cluster
uses; this renderer exists so that the tests can check the rendered overlays offline, without
a kustomize binary. Supported fields of kustomization.yaml:

- `resources`: YAML files (one or more documents) and folders holding a kustomization
- `namespace` (not `namePrefix`: renaming would need kustomize's name-reference rewriting)
- `labels` (each with `pairs`, and `includeSelectors`), `commonAnnotations`
- `images` (`name`, `newName`, `newTag`, `digest`)
- `replicas` (`name`, `count`)
- `patches`: from `path` or inline `patch`, optionally with a `target` (`kind`, `name`); a
  mapping is a strategic-merge patch (lists of mappings that all carry `name` are merged by
  name, `$patch: delete` removes an item, other lists are replaced), a list is a JSON 6902 patch
  (`add`, `replace`, `remove`)

Simplification: kustomize merges each list by the key the Kubernetes API declares for it
(`containerPort` for ports, `mountPath` for volume mounts, `topologyKey` for spread
constraints); here a list merges by `name` when every item has one and is replaced otherwise.
The overlays in deploy/k8s/ patch only lists where both give the same result.

Anything else in a kustomization is refused (KustomizeError), so a field that this renderer
would silently ignore cannot pass the tests.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "commonAnnotations",
    "images",
    "replicas",
    "patches",
}
# Kinds whose objects are not namespaced (they keep no metadata.namespace).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
# Where a kind keeps its pod template (labels with includeSelectors reach it and the selector).
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render faithfully."""


def load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def strategic_merge(base: Any, patch: Any) -> Any:
    """`patch` merged into a copy of `base` (kustomize's strategic merge, simplified)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value)
            else:
                merged[key] = _without_directives(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged_list = copy.deepcopy(base)
        for item in patch:
            index = next((i for i, b in enumerate(merged_list) if b["name"] == item["name"]), None)
            if item.get("$patch") == "delete":
                if index is not None:
                    del merged_list[index]
            elif index is None:
                merged_list.append(_without_directives(item))
            else:
                merged_list[index] = strategic_merge(merged_list[index], item)
        return merged_list
    return _without_directives(patch)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _without_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_directives(v) for k, v in value.items() if k != "$patch"}
    if isinstance(value, list):
        return [_without_directives(v) for v in value]
    return copy.deepcopy(value)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON patch path must start with '/': {path}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json6902(resource: Resource, operations: Iterable[dict[str, Any]]) -> Resource:
    """A copy of `resource` with JSON 6902 `add`, `replace` and `remove` operations applied."""
    doc = copy.deepcopy(resource)
    for op in operations:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        kind = op["op"]
        if kind not in {"add", "replace", "remove"}:
            raise KustomizeError(f"unsupported JSON patch op: {kind}")
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if kind == "add":
                node.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                node[index] = copy.deepcopy(op["value"])
            else:
                del node[index]
        else:
            if kind in {"replace", "remove"} and last not in node:
                raise KustomizeError(f"JSON patch {kind}: {op['path']} does not exist")
            if kind == "remove":
                del node[last]
            else:
                node[last] = copy.deepcopy(op["value"])
    return doc


def _matches(resource: Resource, target: dict[str, Any]) -> bool:
    meta = resource.get("metadata", {})
    return all(
        (
            target.get("kind") in (None, resource.get("kind")),
            target.get("name") in (None, meta.get("name")),
        )
    )


def apply_patch(resources: list[Resource], patch: Any, target: dict[str, Any] | None) -> None:
    """Apply one patch in place to the resources it targets (at least one, else an error)."""
    if isinstance(patch, list):
        if target is None:
            raise KustomizeError("a JSON 6902 patch needs a target")
        hits = [i for i, r in enumerate(resources) if _matches(r, target)]
        for i in hits:
            resources[i] = json6902(resources[i], patch)
    else:
        target = target or {"kind": patch.get("kind"), "name": patch["metadata"]["name"]}
        hits = [i for i, r in enumerate(resources) if _matches(r, target)]
        for i in hits:
            resources[i] = strategic_merge(resources[i], patch)
    if not hits:
        raise KustomizeError(f"patch matches no resource: {target}")


def _set_images(resource: Resource, images: list[dict[str, Any]]) -> None:
    spec = resource.get("spec", {})
    pod = spec.get("template", {}).get("spec", spec if resource.get("kind") == "Pod" else {})
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        name, _, tag = container["image"].partition(":")
        for image in images:
            if image["name"] != name:
                continue
            new_name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{new_name}@{image['digest']}"
            else:
                container["image"] = f"{new_name}:{image.get('newTag', tag or 'latest')}"


def _add_labels(resource: Resource, pairs: dict[str, str], selectors: bool) -> None:
    resource.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    if not selectors:
        return
    spec = resource.get("spec", {})
    if resource.get("kind") in POD_TEMPLATE_KINDS:
        spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
        template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
        template_meta.setdefault("labels", {}).update(pairs)
    elif resource.get("kind") == "Service":
        spec.setdefault("selector", {}).update(pairs)
    elif resource.get("kind") == "PodDisruptionBudget":
        spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)


def render(folder: str | Path) -> list[Resource]:
    """The resources `kustomize build folder` would print (for the supported fields)."""
    folder = Path(folder)
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{folder}: unsupported kustomization fields {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        resources += render(path) if path.is_dir() else load_documents(path)

    for patch_entry in kustomization.get("patches", []):
        if "path" in patch_entry:
            documents = load_documents(folder / patch_entry["path"])
            patch: Any = documents[0] if len(documents) == 1 else documents
        else:
            patch = yaml.safe_load(patch_entry["patch"])
        apply_patch(resources, patch, patch_entry.get("target"))

    for item in kustomization.get("replicas", []):
        hits = [r for r in resources if r["metadata"]["name"] == item["name"] and "spec" in r]
        if not hits:
            raise KustomizeError(f"replicas: no resource named {item['name']}")
        for resource in hits:
            resource["spec"]["replicas"] = item["count"]

    images = kustomization.get("images", [])
    namespace = kustomization.get("namespace")
    for resource in resources:
        if images:
            _set_images(resource, images)
        for label in kustomization.get("labels", []):
            _add_labels(resource, label["pairs"], bool(label.get("includeSelectors", False)))
        annotations = kustomization.get("commonAnnotations")
        if annotations:
            resource["metadata"].setdefault("annotations", {}).update(annotations)
        if namespace and resource.get("kind") not in CLUSTER_SCOPED:
            resource["metadata"]["namespace"] = namespace
    return resources


def by_kind(resources: Iterable[Resource]) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = {}
    for resource in resources:
        out.setdefault(resource["kind"], []).append(resource)
    return out
