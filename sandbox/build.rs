//! Reads the contract (`wit/`) and writes `$OUT_DIR/contract.rs`: the
//! contract's version and the interfaces the `connector` world imports, from
//! which the sandbox's import allow-list follows.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    write_contract_facts();
}

/// The interfaces world `name` of the contract imports, with versions, sorted.
fn world_imports(
    resolve: &wit_parser::Resolve,
    package: wit_parser::PackageId,
    name: &str,
) -> Vec<String> {
    let world = resolve
        .select_world(&[package], Some(name))
        .unwrap_or_else(|e| panic!("the contract defines no world `{name}`: {e:#}"));
    let mut imports: Vec<String> = resolve.worlds[world]
        .imports
        .values()
        .filter_map(|item| match item {
            wit_parser::WorldItem::Interface { id, .. } => resolve.id_of(*id),
            _ => None,
        })
        .collect();
    imports.sort();
    imports
}

/// Writes `$OUT_DIR/contract.rs` from the WIT.
fn write_contract_facts() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    let wit = Path::new(&manifest).join("../wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(&wit)
        .unwrap_or_else(|e| panic!("cannot read the contract in {}: {e:#}", wit.display()));
    let version = resolve.packages[package]
        .name
        .version
        .as_ref()
        .expect("the contract package is versioned")
        .to_string();
    let imports = world_imports(&resolve, package, "connector");
    let runtime_imports = world_imports(&resolve, package, "connector-with-runtime");
    let mut out = String::new();
    writeln!(
        out,
        "/// The contract version this host implements (the WIT package's)."
    )
    .unwrap();
    writeln!(out, "pub const CONTRACT_VERSION: &str = {version:?};").unwrap();
    writeln!(
        out,
        "/// Every interface the `connector` world imports, with its version."
    )
    .unwrap();
    writeln!(out, "pub const WORLD_IMPORTS: &[&str] = &{imports:?};").unwrap();
    writeln!(
        out,
        "/// Every interface the `connector-with-runtime` world imports: the above,\n/// and the filesystem and sockets interfaces a language runtime links."
    )
    .unwrap();
    writeln!(
        out,
        "pub const RUNTIME_WORLD_IMPORTS: &[&str] = &{runtime_imports:?};"
    )
    .unwrap();
    let out_dir = std::env::var("OUT_DIR").expect("run by cargo");
    std::fs::write(Path::new(&out_dir).join("contract.rs"), out).expect("OUT_DIR is writable");
}
