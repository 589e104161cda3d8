//! The launcher's library: everything `main.rs` wires together.
//!
//! `cli` parses, `spec` validates into a plan, a backend (`qemu`, `container`: see
//! `backend`, the seam they share; `vm`, what every VM backend shares) runs it through
//! `session`, and `exit` maps the outcome to a status.

pub mod accel;
pub mod backend;
pub mod bench;
pub mod bench_chart;
pub mod cli;
pub mod container;
pub mod control;
pub mod exit;
pub mod identity;
pub mod initfile;
pub mod kernel;
pub mod layout;
pub mod libvirt;
pub mod mounts;
pub mod network;
pub mod proc;
pub mod qemu;
pub mod runtime_dir;
pub mod session;
pub mod spec;
pub mod terminal;
pub mod timings;
pub mod units;
pub mod vm;
pub mod workdir;
