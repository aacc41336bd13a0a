//! Embeds the git revision for `crewshipd_build_info`, and derives the
//! schema's migration list from the backends' migration directories.

use std::path::Path;
use std::process::Command;

/// Each backend's directory of `VERSION_NAME.sql` files: the same names in
/// each, or the build fails.
const MIGRATION_DIRS: &[(&str, &str)] =
    &[("sqlite", "src/store/sqlite/migrations"), ("postgresql", "src/store/postgresql/migrations")];

fn revision() {
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CREWSHIP_REVISION={revision}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}

/// The `VERSION_NAME` stems of a directory's `.sql` files, in order.
fn stems(dir: &Path) -> Vec<String> {
    let mut stems: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .map(|p| p.file_stem().expect("a file name").to_string_lossy().into_owned())
        .collect();
    stems.sort();
    stems
}

/// Writes `migrations.rs` (the list of versions and names) and, for each
/// backend, `<backend>_migrations.rs` (its SQL of each, in that order).
fn migrations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).to_path_buf();
    let mut first: Option<(&str, Vec<String>)> = None;
    for (backend, dir) in MIGRATION_DIRS {
        println!("cargo:rerun-if-changed={dir}");
        let dir = root.join(dir);
        let stems = stems(&dir);
        let sql: String = stems
            .iter()
            .map(|s| format!("    include_str!({:?}),\n", dir.join(format!("{s}.sql")).display().to_string()))
            .collect();
        std::fs::write(out.join(format!("{backend}_migrations.rs")), format!("&[\n{sql}]\n")).expect("write");
        match &first {
            Some((other, list)) => assert_eq!(
                list, &stems,
                "the migrations of {other} and {backend} differ: each needs the same VERSION_NAME.sql files"
            ),
            None => first = Some((backend, stems)),
        }
    }
    let (_, stems) = first.expect("a backend");
    let list: String = stems
        .iter()
        .map(|stem| {
            let (version, name) = stem.split_once('_').unwrap_or_else(|| panic!("{stem}: not VERSION_NAME"));
            assert!(version.len() == 14 && version.bytes().all(|b| b.is_ascii_digit()), "{stem}: not VERSION_NAME");
            format!("    Migration {{ version: {version}, name: {name:?} }},\n")
        })
        .collect();
    std::fs::write(out.join("migrations.rs"), format!("&[\n{list}]\n")).expect("write");
}

fn main() {
    revision();
    migrations();
}
