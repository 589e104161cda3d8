//! virt-sandbox's man page and shell completions, generated from the launcher's own
//! clap definition (`virt_sandbox::cli::Cli`), so that a new option is documented the
//! moment it exists. `scripts/install.sh` runs the binary and installs what it writes.

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};
use virt_sandbox::cli::Cli;

pub mod man;
pub mod sections;

/// The launcher's name, as installed and as the completions register it.
pub const BIN: &str = "virt-sandbox";

/// What cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create {}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The launcher's command, as clap builds it.
pub fn command() -> clap::Command {
    Cli::command()
}

/// The completion script for `shell`.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command(), BIN, &mut out);
    out
}

/// Each file this generator writes: its name in the output directory and its contents.
/// `date`: the man page's, YYYY-MM-DD.
pub fn files(date: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("virt-sandbox.1", man::render(command(), date)),
        // The names each shell's completion directory expects (bash-completion loads
        // completions/NAME on first use, zsh autoloads _NAME, fish NAME.fish).
        ("virt-sandbox.bash", completion(Shell::Bash)),
        ("_virt-sandbox", completion(Shell::Zsh)),
        ("virt-sandbox.fish", completion(Shell::Fish)),
    ]
}

/// Writes every file into `dir`, which is created if need be.
pub fn write_all(dir: &Path, date: &str) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir { path: dir.to_owned(), source })?;
    let mut written = Vec::new();
    for (name, bytes) in files(date) {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| Error::Write { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}
