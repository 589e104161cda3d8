//! `virt-sandbox-docgen OUTDIR`: writes virt-sandbox.1 and the bash, zsh and fish
//! completions into OUTDIR. Run by scripts/install.sh; not installed itself.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: virt-sandbox-docgen OUTDIR");
        return ExitCode::from(2);
    };
    match virt_sandbox_docgen::write_all(std::path::Path::new(dir)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virt-sandbox-docgen: {}", virt_sandbox::exit::describe(&e));
            ExitCode::FAILURE
        }
    }
}
