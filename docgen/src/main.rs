//! `virt-sandbox-docgen OUTDIR`: writes virt-sandbox.1 and the bash, zsh and fish
//! completions into OUTDIR. Run by scripts/install.sh; not installed itself. The man
//! page's date is `$SOURCE_DATE_EPOCH`'s (install.sh passes the last commit's), else
//! today's.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: virt-sandbox-docgen OUTDIR");
        return ExitCode::from(2);
    };
    let epoch =
        std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
        });
    let date = virt_sandbox_docgen::man::date(epoch);
    match virt_sandbox_docgen::write_all(std::path::Path::new(dir), &date) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virt-sandbox-docgen: {}", virt_sandbox::exit::describe(&e));
            ExitCode::FAILURE
        }
    }
}
