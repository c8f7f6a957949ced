"""The feature catalog: what exists, who owns it, how fresh and how full it is, and what is defined twice.

Read from the registry (definitions, statistics of each validated materialization),
so the catalog asset, ``mlops features list|describe|diff`` and the docs all show
the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mlops_assets.features.definitions import Feature, FeatureError, FeatureView
from mlops_assets.markdown import markdown_table


@dataclass
class Catalog:
    rows: pd.DataFrame
    duplicates: list[dict]


def statistics_table(stats: dict) -> pd.DataFrame:
    """One row per feature: null rate, and mean/std/quantiles or the most common categories."""
    rows = []
    for name, s in stats["features"].items():
        if "categories" in s:
            top = ", ".join(f"{k} {v:.0%}" for k, v in list(s["categories"].items())[:4])
            rows.append({"feature": name, "null_rate": s["null_rate"], "summary": top})
        else:
            rows.append({"feature": name, "null_rate": s["null_rate"],
                         "summary": " ".join(f"{k}={_fmt(s.get(k))}" for k in ("mean", "std", "min", "p50", "max"))})
    return pd.DataFrame(rows, columns=["feature", "null_rate", "summary"])


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _transformation_source(view: FeatureView, feature: Feature) -> str:
    return next((t.source for t in view.transformations if t.name == feature.transformation), "")


def duplicate_features(views: list[FeatureView]) -> list[dict]:
    """Groups of features computed the same way from the same columns, under different names or views."""
    groups: dict[tuple, list[str]] = {}
    for view in views:
        for feature in view.features:
            groups.setdefault(feature.fingerprint(_transformation_source(view, feature)), []).append(feature.reference)
    return [{"features": refs, "definition": " ".join(key[:1]) + ": " + (key[1] if key[0] == "column" else
             next(f.expression or f.transformation or "" for v in views for f in v.features if f.reference == refs[0]))}
            for key, refs in groups.items() if len(refs) > 1]


def build_catalog(store) -> Catalog:
    rows = []
    for view in store.views:
        entry = store.registry.entry(view.name, view.version)
        validated = store.registry.latest_validated(view.name, view.version)
        materialization = entry["materializations"].get(str(validated), {}) if entry and validated is not None else {}
        stats = materialization.get("stats", {})
        for feature in view.features:
            s = stats.get("features", {}).get(feature.name, {})
            rows.append({
                "feature": feature.name, "view": view.name, "type": feature.type, "description": feature.description,
                "owner": view.owner, "version": view.version, "table_version": validated,
                "freshness": stats.get("newest_event_time"), "null_rate": s.get("null_rate"),
                "stats": ", ".join(f"{k} {v:.0%}" for k, v in list(s["categories"].items())[:3]) if "categories" in s
                else " ".join(f"{k}={_fmt(s.get(k))}" for k in ("mean", "std", "min", "max")) if s else "not materialized",
            })
    return Catalog(pd.DataFrame(rows), duplicate_features(store.views))


def catalog_markdown(store, catalog: Catalog) -> str:
    lines = [f"# Feature catalog: {store.config.name}", ""]
    for view in store.views:
        lines += [f"- **{view.name}** (version `{view.version}`, owner {view.owner}, TTL {view.ttl_text}): "
                  f"{view.description}"]
    lines += ["", markdown_table(catalog.rows), ""]
    if catalog.duplicates:
        lines += ["## Defined twice", ""]
        lines += [f"- {', '.join(d['features'])}: same {d['definition']}" for d in catalog.duplicates]
    else:
        lines += ["No feature is defined twice (same source columns and transformation under another name)."]
    return "\n".join(lines) + "\n"


def describe(store, name: str) -> str:
    """Everything about one feature (``view:feature`` or a unique name): definition, lineage, versions, stats."""
    from mlops_assets.features.retrieval import resolve_features

    (view_name, (feature_name,)), = resolve_features(store.views, [name]).items()
    view = store.view(view_name)
    feature = next(f for f in view.features if f.name == feature_name)
    lines = [f"{view.name}:{feature.name}  ({feature.type}, {feature.kind})", f"  {feature.description}",
             f"  view: {view.name} version {view.version}, owner {view.owner}, TTL {view.ttl_text}",
             f"  entity: {view.entity_column}, event time: {view.time_column}, source: {view.source}",
             f"  computed from: {', '.join(feature.inputs)}"]
    if feature.expression:
        lines.append(f"  expression: {feature.expression}")
    if feature.transformation:
        lines.append(f"  transformation: {feature.transformation} (Python)")
    if feature.tags:
        lines.append(f"  tags: {', '.join(feature.tags)}")
    entry = store.registry.entry(view.name, view.version)
    for version, m in sorted((entry or {"materializations": {}})["materializations"].items(), key=lambda x: int(x[0])):
        s = m["stats"]["features"].get(feature.name, {})
        state = "validated" if m.get("validated") else "FAILED checks"
        summary = (", ".join(f"{k} {v:.0%}" for k, v in list(s.get("categories", {}).items())[:4]) if "categories" in s
                   else " ".join(f"{k}={_fmt(s.get(k))}" for k in ("mean", "std", "p10", "p50", "p90")))
        lines.append(f"  table v{version} ({state}, {m['committed_at'][:19]}): null rate {s.get('null_rate', 0):.3f}; {summary}")
    if not entry or not entry["materializations"]:
        lines.append("  not materialized yet")
    return "\n".join(lines)


def diff(store, version_a: str, version_b: str) -> str:
    """Two registered view versions side by side: definition, then statistics of their newest materializations."""
    a, b = store.registry.find_version(version_a), store.registry.find_version(version_b)
    if a["view"] != b["view"]:
        raise FeatureError(f"{version_a} is a version of view {a['view']!r} and {version_b} of {b['view']!r}; "
                           "compare two versions of one view")
    features_a = {f["name"]: f for f in a["features"]}
    features_b = {f["name"]: f for f in b["features"]}
    rows = []
    for name in dict.fromkeys([*features_a, *features_b]):
        fa, fb = features_a.get(name), features_b.get(name)
        rows.append({"feature": name, a["version"]: _definition_text(fa), b["version"]: _definition_text(fb),
                     "changed": "" if _definition_text(fa) == _definition_text(fb) else "yes"})
    for key in ("ttl", "entity", "event_time", "source"):
        if a[key] != b[key]:
            rows.append({"feature": f"({key})", a["version"]: str(a[key]), b["version"]: str(b[key]), "changed": "yes"})
    for name in sorted(set(a["transformations"]) | set(b["transformations"])):
        if a["transformations"].get(name) != b["transformations"].get(name):
            rows.append({"feature": f"(code of {name})", a["version"]: "source A", b["version"]: "source B", "changed": "yes"})
    stats_rows = []
    stats_a, stats_b = _newest_stats(a), _newest_stats(b)
    for name in dict.fromkeys([*features_a, *features_b]):
        sa, sb = stats_a.get(name, {}), stats_b.get(name, {})
        stats_rows.append({"feature": name, f"null_rate {a['version']}": sa.get("null_rate"),
                           f"null_rate {b['version']}": sb.get("null_rate"),
                           f"mean {a['version']}": sa.get("mean"), f"mean {b['version']}": sb.get("mean")})
    return (f"view {a['view']}: {a['version']} (registered {a['registered_at'][:19]}) vs {b['version']} "
            f"(registered {b['registered_at'][:19]})\n\nDefinition\n{markdown_table(pd.DataFrame(rows))}\n\n"
            f"Statistics (newest materialization of each)\n{markdown_table(pd.DataFrame(stats_rows))}\n")


def _definition_text(feature: dict | None) -> str:
    if feature is None:
        return "(absent)"
    how = feature["expression"] or feature["transformation"] or "column"
    return f"{feature['type']} {feature['kind']}: {how}"


def _newest_stats(entry: dict) -> dict:
    if not entry["materializations"]:
        return {}
    newest = max(entry["materializations"], key=int)
    return entry["materializations"][newest]["stats"]["features"]
