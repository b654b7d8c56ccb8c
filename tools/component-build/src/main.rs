//! `build-component PACKAGE ARTIFACT OUT_DIR`: builds a workspace crate as a
//! `wasm32-wasip2` component exactly as the build scripts do, outside a build
//! script, and prints the path of the copy in `OUT_DIR` (which must sit four
//! levels below the target directory, like a build script's). Used by
//! `tools/check-reproducible.sh`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [package, artifact, out_dir] = args.as_slice() else {
        eprintln!("usage: build-component PACKAGE ARTIFACT OUT_DIR");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(out_dir) {
        eprintln!("cannot create {out_dir}: {e}");
        return ExitCode::from(2);
    }
    // The library takes OUT_DIR from the environment, as a build script's.
    std::env::set_var("OUT_DIR", out_dir);
    let built = component_build::build(package, artifact, &[]);
    println!("{}", built.display());
    ExitCode::SUCCESS
}
