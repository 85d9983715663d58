//! The region core's layers point one way, and no module imports another
//! that (directly or not) imports it back. Read from the source: every
//! `crate::…` and `super::…` path in a file (test modules excluded) is an
//! edge from that file's module to the module the path names. Each module
//! is placed in one layer below; a module may use its own layer and those
//! beneath it. A new module fails this test until it is placed, so the
//! table stays the map of the crate (`docs/architecture.md` draws it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layer names, bottom first.
const LAYERS: [&str; 6] = ["config", "core", "adapters", "services", "http", "app"];

/// Every module of `src/` and its layer (an index into [`LAYERS`]).
const PLACES: &[(&str, usize)] = &[
    // Configuration: plain data, imports nothing of the crate.
    ("config", 0),
    // Pure cores and the shared vocabulary: no I/O.
    ("error", 1),
    ("backoff", 1),
    ("paging", 1),
    ("http_log", 1),
    ("http_metrics", 1),
    ("db", 1),
    ("idempotency", 1),
    ("holds::decide", 1),
    ("live::message", 1),
    ("live::history", 1),
    ("checkout::machine", 1),
    ("mail::compose", 1),
    ("mail::qr", 1),
    ("reports::sales", 1),
    ("diagnostics::seat_check", 1),
    // Adapters: one external system each (Postgres tables, Redis, the
    // payment gateway) and the token keys.
    ("auth", 2),
    ("idempotency::store", 2),
    ("holds::store", 2),
    ("bookings::store", 2),
    ("redis_locator", 2),
    ("catalog_client", 2),
    ("edge_cache", 2),
    ("redis_path", 2),
    ("redlock", 2),
    ("outbox", 2),
    ("outbox::redis_stream", 2),
    ("payments", 2),
    ("payments::http", 2),
    ("shows", 2),
    ("group_commit", 2),
    ("lease", 2),
    ("reports::store", 2),
    ("audit::store", 2),
    ("ownership", 2),
    ("show_cancel::store", 2),
    ("sale_config::store", 2),
    ("diagnostics::store", 2),
    ("mail::queue", 2),
    // Services: the work, across adapters; `state` bundles their parts.
    ("state", 3),
    ("holds::rules", 3),
    ("holds::writer", 3),
    ("holds::flash_sale", 3),
    ("checkout::flow", 3),
    ("checkout::record", 3),
    ("checkout::settle", 3),
    ("checkout::settle::batch", 3),
    ("checkout::jobs", 3),
    ("refunds", 3),
    ("reconcile", 3),
    ("recovery", 3),
    ("path_switch", 3),
    ("sweeper", 3),
    ("pool_sampler", 3),
    ("notifier", 3),
    ("mail", 3),
    ("tickets", 3),
    ("retention", 3),
    ("live::snapshot", 3),
    ("live::feed", 3),
    ("live::hub", 3),
    ("live::task", 3),
    ("show_cancel::job", 3),
    // HTTP: routers, handlers, extractors.
    ("checkout", 4),
    ("checkout::http", 4),
    ("holds", 4),
    ("bookings", 4),
    ("catalog", 4),
    ("audit", 4),
    ("sale_config", 4),
    ("catalog::cities", 4),
    ("catalog::venues", 4),
    ("catalog::screens", 4),
    ("catalog::movies", 4),
    ("catalog::shows", 4),
    ("catalog::page", 4),
    ("catalog::show_admin", 4),
    ("catalog::prices", 4),
    ("catalog::blocked_seats", 4),
    ("seat_map", 4),
    ("live", 4),
    ("live::socket", 4),
    ("webhook", 4),
    ("checkins", 4),
    ("reports", 4),
    ("health", 4),
    ("serve", 4),
    ("show_cancel", 4),
    ("diagnostics", 4),
    ("mail::admin", 4),
    // The global catalog: a service of its own in the same binary.
    ("global_catalog", 4),
    ("global_catalog::movies", 4),
    ("global_catalog::audit", 4),
    ("global_catalog::listings", 4),
    ("global_catalog::search", 4),
    // Wiring: builds everything and runs it.
    ("app", 5),
];

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`.
fn module_of(rel: &Path) -> String {
    let s = rel.with_extension("").to_string_lossy().replace('\\', "/");
    let s = s.strip_suffix("/mod").unwrap_or(&s).to_owned();
    s.replace('/', "::")
}

fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under src");
            let source = std::fs::read_to_string(&path).expect("read source");
            out.insert(module_of(rel), source);
        }
    }
}

/// The source without comments' lines and without its test module.
fn code_of(source: &str) -> String {
    let source = source.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

/// The paths after `prefix::` at `s`: `a::b::c`, or each item of a
/// `a::{b, c::d}` group (nested groups keep their leading path).
fn paths_at(s: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut rest = s;
    loop {
        let n = ident_len(rest);
        if n == 0 {
            break;
        }
        segments.push(&rest[..n]);
        rest = &rest[n..];
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    let base = segments.join("::");
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 1;
        let mut item = String::new();
        let mut items = Vec::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 1 => {
                    items.push(std::mem::take(&mut item));
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                items.push(std::mem::take(&mut item));
                break;
            }
            item.push(c);
        }
        return items
            .iter()
            .map(|i| i.trim())
            .filter(|i| !i.is_empty())
            .map(|i| {
                let head = &i[..ident_len(i)];
                if base.is_empty() {
                    head.to_owned()
                } else {
                    format!("{base}::{head}")
                }
            })
            .collect();
    }
    vec![base]
}

/// The module a path names: its longest prefix that is a module.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Module → the modules it uses (itself and its own submodules left out).
fn graph(sources: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut g = BTreeMap::new();
    for (module, source) in sources {
        let code = code_of(source);
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p).to_owned();
        let mut uses = BTreeSet::new();
        for (marker, base) in [("crate::", String::new()), ("super::", parent)] {
            for (at, _) in code.match_indices(marker) {
                // `crate::` inside a longer identifier (`my_crate::`) is not ours.
                let before = code[..at].chars().last();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                for p in paths_at(&code[at + marker.len()..]) {
                    let full = if base.is_empty() {
                        p
                    } else {
                        format!("{base}::{p}")
                    };
                    if let Some(target) = resolve(&full, &modules) {
                        let own = target == *module || target.starts_with(&format!("{module}::"));
                        if !own {
                            uses.insert(target);
                        }
                    }
                }
            }
        }
        g.insert(module.clone(), uses);
    }
    g
}

/// A cycle of `g`, if any, as the modules along it.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_owned(), 1);
        path.push(m.to_owned());
        for next in g.get(m).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = path.iter().position(|p| p == next).unwrap_or(0);
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, g, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(m.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if !state.contains_key(m.as_str()) {
            if let Some(c) = visit(m, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Every way `g` breaks the rules, one line each.
fn violations(g: &BTreeMap<String, BTreeSet<String>>, places: &[(&str, usize)]) -> Vec<String> {
    let layer: BTreeMap<&str, usize> = places.iter().copied().collect();
    let mut out = Vec::new();
    for (m, uses) in g {
        let Some(&from) = layer.get(m.as_str()) else {
            out.push(format!("{m} has no layer: place it in PLACES"));
            continue;
        };
        for u in uses {
            match layer.get(u.as_str()) {
                Some(&to) if to > from => out.push(format!(
                    "{m} ({}) uses {u} ({}), a layer above it",
                    LAYERS[from], LAYERS[to]
                )),
                _ => {}
            }
        }
    }
    if let Some(c) = find_cycle(g) {
        out.push(format!("cycle: {}", c.join(" -> ")));
    }
    out
}

#[test]
fn the_region_core_layers_point_one_way_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    walk(&root, &root, &mut sources);
    sources.remove("lib");
    sources.remove("main");
    let g = graph(&sources);
    assert!(
        g.get("config").is_some_and(BTreeSet::is_empty),
        "config must import nothing of the crate: {:?}",
        g.get("config")
    );
    assert!(
        g.len() > 40,
        "the scan found only {} modules: is it reading src/?",
        g.len()
    );
    if std::env::var_os("LAYERS_PRINT").is_some() {
        for (m, u) in &g {
            eprintln!("{m} -> {u:?}");
        }
    }
    let bad = violations(&g, PLACES);
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
    // The table names nothing that no longer exists.
    for (m, _) in PLACES {
        assert!(
            g.contains_key(*m),
            "PLACES names {m}, which is not a module"
        );
    }
}

/// Negative control: the checker finds each kind of breakage in a small
/// crate written to have them.
#[test]
fn the_checker_sees_upward_uses_cycles_and_unplaced_modules() {
    let src = |s: &str| s.to_owned();
    let sources: BTreeMap<String, String> = [
        ("config", src("use crate::auth::Key;\n")),
        ("auth", src("use crate::{config, error::ApiError};\n")),
        ("error", src("// crate::auth in a comment is no edge\n")),
        (
            "holds",
            src("use super::x;\nfn f() { crate::holds::store::fetch(); }\n"),
        ),
        ("holds::store", src("use crate::holds::rules;\n")),
        (
            "holds::rules",
            src("use super::store::Row;\n#[cfg(test)]\nmod tests { use crate::app; }\n"),
        ),
        ("newcomer", src("")),
        ("app", src("")),
    ]
    .into_iter()
    .map(|(m, s)| (m.to_owned(), s))
    .collect();
    let g = graph(&sources);
    assert_eq!(g["config"], BTreeSet::from(["auth".to_owned()]));
    assert_eq!(
        g["auth"],
        BTreeSet::from(["config".to_owned(), "error".to_owned()])
    );
    assert!(g["error"].is_empty(), "comments are not code");
    assert!(
        g["holds"].is_empty(),
        "a module's own submodules are not edges"
    );
    assert_eq!(
        g["holds::rules"],
        BTreeSet::from(["holds::store".to_owned()])
    );
    let places = [
        ("config", 0),
        ("error", 1),
        ("auth", 2),
        ("holds::store", 2),
        ("holds::rules", 3),
        ("holds", 4),
        ("app", 5),
    ];
    let bad = violations(&g, &places);
    let has = |needle: &str| bad.iter().any(|b| b.contains(needle));
    assert!(has("config (config) uses auth (adapters)"), "{bad:?}");
    assert!(
        has("holds::store (adapters) uses holds::rules (services)"),
        "{bad:?}"
    );
    assert!(has("newcomer has no layer"), "{bad:?}");
    assert!(has("cycle: "), "{bad:?}");
}
