use super::*;

/// A run's phases as `virt-sandbox --timings` names them in a VM, with made-up times.
fn vm_run(wall_ms: f64) -> RunRecord {
    let phases = [
        ("launcher setup", 0.3),
        ("kernel, accelerator and devices chosen", 3.7),
        ("initrd (cache hit)", 4.0),
        ("kernel image ready", 0.0),
        ("QEMU spawned", 3.1),
        ("virtiofsd started", 1.0),
        ("QEMU connected", 35.8),
        ("guest: init started", 2466.9),
        ("guest: console driver loaded", 150.9),
        ("guest: hello", 39.7),
        ("guest: run spec received", 19.1),
        ("guest: modules loaded", 75.0),
        ("guest: root mounted", 23.5),
        ("guest: command started", 71.8),
        ("guest: command exited", 77.8),
        ("guest: synced", 2.1),
        ("exit status received", 0.3),
        ("sandbox gone", 19.9),
    ];
    RunRecord { wall_ms, exit: 0, phases: phases.iter().map(|(n, t)| (n.to_string(), *t)).collect() }
}

fn names(r: &RunRecord) -> Vec<String> {
    r.phases.iter().map(|(n, _)| n.clone()).collect()
}

#[test]
fn each_phase_falls_in_the_family_whose_time_it_is() {
    use Family::*;
    let families: Vec<Family> = names(&vm_run(0.0)).iter().map(|n| Family::of(n, true)).collect();
    let want = [
        Launcher, Launcher, Launcher, Launcher, Launcher, Launcher, Launcher, KernelBoot, Init, Init, Init, Init, Init,
        Command, Command, Init, Launcher, Launcher,
    ];
    assert_eq!(families, want);
    // A container boots no kernel: its init starts from the launcher's clone.
    assert_eq!(Family::of("namespaces created, init started", false), Launcher);
    assert_eq!(Family::of("guest: init started", false), Init);
    assert_eq!(Family::of("init and seccomp programs ready", false), Launcher);
    assert_eq!(Family::of("initrd (built)", true), Launcher);
    assert_eq!(Family::of("control channel connected", true), Launcher);
    assert_eq!(Family::of("something new", true), Other);
}

#[test]
fn families_differ_in_hue_and_their_phases_in_shade() {
    let names = names(&vm_run(0.0));
    let colours = palette(&names, true);
    let rgb: Vec<(u8, u8, u8)> = colours.iter().map(|(_, c)| c.to_rgba().rgb()).collect();
    for (i, a) in rgb.iter().enumerate() {
        assert!(!rgb[i + 1..].contains(a), "{} shares its colour {a:?}", names[i]);
    }
    for ((family, _), (r, g, b)) in colours.iter().zip(&rgb) {
        let (r, g, b) = (*r as i32, *g as i32, *b as i32);
        let ok = match family {
            Family::Launcher => b > r && b > g,
            Family::KernelBoot => r > g && g > b,
            Family::Init => g > r && g > b,
            Family::Command => r > g && b > g,
            Family::Other => r == g && g == b,
        };
        assert!(ok, "{family:?}: ({r}, {g}, {b})");
    }
}

/// (x, text) of every `<text>` element of an SVG that plotters wrote.
fn texts(svg: &str) -> Vec<(f64, String)> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let x = t.split("x=\"").nth(1)?.split('"').next()?.parse().ok()?;
            let body = t.split_once('>')?.1.split("</text>").next()?;
            Some((x, body.trim().to_string()))
        })
        .collect()
}

#[test]
fn runs_are_numbered_in_whole_numbers_and_the_legend_stands_right_of_the_plot() {
    let records: Vec<RunRecord> = (0..6).map(|i| vm_run(2800.0 + 40.0 * i as f64)).collect();
    let svg = svg(&records).unwrap();
    let texts = texts(&svg);
    let x_of = |s: &str| texts.iter().find(|(_, t)| t == s).map(|(x, _)| *x);
    let runs: Vec<f64> =
        (1..=6).map(|i| x_of(&i.to_string()).unwrap_or_else(|| panic!("no run {i}: {texts:?}"))).collect();
    assert!(runs.windows(2).all(|w| w[0] < w[1]), "{runs:?}");
    let fractional = |t: &str| {
        t.split_once('.').is_some_and(|(a, b)| !a.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()))
    };
    assert!(!texts.iter().any(|(_, t)| fractional(t)), "a fractional label: {texts:?}");
    // The plot ends half a run right of run 6's label; the legend's names and medians
    // stand beyond it.
    let plot_right = runs[5] + (runs[5] - runs[4]) / 2.0;
    let names = names(&records[0]);
    let legend: Vec<&(f64, String)> =
        texts.iter().filter(|(_, t)| names.contains(t) || t.ends_with(" ms") && !t.contains(':')).collect();
    assert_eq!(legend.len(), 2 * names.len(), "{texts:?}");
    assert!(legend.iter().all(|(x, _)| *x > plot_right), "plot ends at {plot_right}: {legend:?}");
    assert!(texts.iter().any(|(_, t)| t == "kernel boot"), "{texts:?}");
    assert!(texts.iter().any(|(_, t)| t == "2467 ms"), "guest: init started's median: {texts:?}");
}

#[test]
fn one_run_or_many_are_numbered_in_whole_numbers() {
    for n in [1, 2, 40] {
        let records: Vec<RunRecord> = (0..n).map(|i| vm_run(2800.0 + i as f64)).collect();
        let texts = texts(&svg(&records).unwrap());
        // The last run is labelled (with many, every other one is).
        assert!(texts.iter().any(|(_, t)| *t == n.to_string()), "{n} runs: {texts:?}");
        assert!(!texts.iter().any(|(_, t)| t.parse::<f64>().is_ok_and(|v| v.fract() != 0.0)), "{n} runs: {texts:?}");
    }
}
