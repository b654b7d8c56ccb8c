//! End-to-end tests: the CLI, the host, the bundled wasm component and the
//! emulator (or a hostile server), over real HTTP on 127.0.0.1.
//!
//! One test binary (linking wasmtime once); the component is compiled once
//! per process by the shared runtime and cached on disk.

mod e2e {
    pub mod auth;
    pub mod browser;
    pub mod cli;
    pub mod conformance;
    pub mod console;
    pub mod example;
    pub mod faults;
    pub mod lifecycle;
    pub mod netbox;
    pub mod network;
    pub mod node;
    pub mod postgres;
    pub mod process;
    pub mod sandbox;
    pub mod sync;
    pub mod workers;
}
