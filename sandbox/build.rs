//! Reads the contract (`wit/`) and writes `$OUT_DIR/contract.rs`: the
//! contract's version and the interfaces the `connector` world imports, from
//! which the sandbox's import allow-list follows.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    write_contract_facts();
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
    let world = resolve
        .select_world(&[package], Some("connector"))
        .expect("the contract defines world `connector`");
    let version = resolve.packages[package]
        .name
        .version
        .as_ref()
        .expect("the contract package is versioned")
        .to_string();
    let mut imports: Vec<String> = resolve.worlds[world]
        .imports
        .values()
        .filter_map(|item| match item {
            wit_parser::WorldItem::Interface { id, .. } => resolve.id_of(*id),
            _ => None,
        })
        .collect();
    imports.sort();
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
    let out_dir = std::env::var("OUT_DIR").expect("run by cargo");
    std::fs::write(Path::new(&out_dir).join("contract.rs"), out).expect("OUT_DIR is writable");
}
