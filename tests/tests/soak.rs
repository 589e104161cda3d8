//! The short soak (scripts/soak.sh is the long one): 20 runs, sequential and parallel,
//! each with random output on stdout and stderr and a random exit status, all exact.

use virt_sandbox_tests::*;

fn one(b: Backend, dir: &std::path::Path, seed: u64) -> Result<(), String> {
    let size = (seed.wrapping_mul(2654435761) % (2 << 20)) as usize;
    let code = (seed.wrapping_mul(40503) % 256) as i32;
    let data = pseudo_random(size, seed);
    let file = dir.join(format!("{b:?}-{seed}"));
    std::fs::write(&file, &data).unwrap();
    let script = format!("cat {0}; cat {0} >&2; exit {code}", file.display());
    let r = b.run(&["--", "sh", "-c", &script]);
    if r.code != code || r.stdout != data || r.stderr_raw != data {
        return Err(format!(
            "{b:?} seed {seed}: exit {} (want {code}), stdout {} bytes (want {size})",
            r.code,
            r.stdout.len()
        ));
    }
    Ok(())
}

#[test]
fn twenty_runs_sequential_and_parallel_are_byte_exact() {
    let dir = Scratch::new("soak");
    // Container: 4 in a row, then 8 at once. VM: 4 in a row, then 2 pairs at once.
    for seed in 1..=4 {
        one(Backend::Container, dir.path(), seed).unwrap();
        one(Backend::Vm, dir.path(), seed).unwrap();
    }
    let d = dir.path().to_path_buf();
    let handles: Vec<_> = (10..18)
        .map(|s| {
            let d = d.clone();
            std::thread::spawn(move || one(Backend::Container, &d, s))
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    for pair in [[20u64, 21], [22, 23]] {
        let hs: Vec<_> = pair
            .iter()
            .map(|&s| {
                let d = d.clone();
                std::thread::spawn(move || one(Backend::Vm, &d, s))
            })
            .collect();
        for h in hs {
            h.join().unwrap().unwrap();
        }
    }
}
