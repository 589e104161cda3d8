//! Resource limits (`--memory`, `--pids`, `--cpus`) through a cgroup of the sandbox's
//! own, under the launcher's cgroup, on v1 (this machine) or v2 (most distributions).
//! Created only when a limit is asked for; removed when the sandbox ends.
//!
//! Host facts (the mount table, `/proc/self/cgroup`) are parameters, so the logic runs
//! on a temp-dir fixture in tests.

use std::io;
use std::path::{Path, PathBuf};

/// Why the sandbox's cgroup could not be made or filled.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither v1 hierarchies nor a v2 one have the controllers asked for.
    #[error("no cgroup hierarchy offers the controllers for the limits asked (memory, pids, cpu)")]
    NoHierarchy,

    #[error("cannot create the cgroup {}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The controller's file for a limit is in none of the cgroup's directories.
    #[error("cgroup file {file} not found")]
    NoLimitFile { file: String },

    #[error("cannot write {value} to {}", .path.display())]
    WriteLimit {
        value: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot add pid {pid} to the cgroup {}", .path.display())]
    AddProcess {
        pid: u32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<u32>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.pids.is_some() || self.cpus.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

#[derive(Debug)]
pub struct Cgroup {
    version: Version,
    /// One per controller on v1; one on v2.
    dirs: Vec<PathBuf>,
}

const CFS_PERIOD_US: u64 = 100_000;

impl Cgroup {
    /// Creates the cgroup and writes the limits. `mounts` is /proc/mounts, `own` is
    /// /proc/self/cgroup.
    pub fn create(limits: &Limits, name: &str, mounts: &str, own: &str) -> Result<Cgroup, Error> {
        let leaf = format!("virt-sandbox-{}", name.trim_start_matches("virt-sandbox-"));
        let v1 = |ctrl: &str| -> Option<PathBuf> {
            let mnt = mounts.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 4 && f[2] == "cgroup" && f[3].split(',').any(|o| o == ctrl)).then(|| PathBuf::from(f[1]))
            })?;
            let path = own.lines().find_map(|l| {
                let mut p = l.splitn(3, ':');
                let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
                ctrls.split(',').any(|c| c == ctrl).then(|| path.trim_start_matches('/').to_string())
            })?;
            Some(mnt.join(path).join(&leaf))
        };
        let wanted: Vec<&str> =
            [limits.memory.map(|_| "memory"), limits.pids.map(|_| "pids"), limits.cpus.map(|_| "cpu")]
                .into_iter()
                .flatten()
                .collect();

        let mut cg = if wanted.iter().all(|c| v1(c).is_some()) {
            Cgroup { version: Version::V1, dirs: wanted.iter().filter_map(|c| v1(c)).collect() }
        } else {
            let mnt = mounts
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() >= 3 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
                })
                .ok_or(Error::NoHierarchy)?;
            let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim_start_matches('/');
            let parent = mnt.join(path);
            // Controllers must be enabled in the parent for the child to have them.
            let enable: String = wanted.iter().map(|c| format!("+{c} ")).collect();
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), enable.trim_end());
            Cgroup { version: Version::V2, dirs: vec![parent.join(&leaf)] }
        };
        for d in &cg.dirs {
            std::fs::create_dir(d).map_err(|source| Error::CreateDir { path: d.clone(), source })?;
        }
        if let Err(e) = cg.write_limits(limits) {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn dir_with(&self, file: &str) -> Option<&Path> {
        self.dirs.iter().map(PathBuf::as_path).find(|d| d.join(file).exists())
    }

    fn set(&self, file: &str, value: &str) -> Result<(), Error> {
        let dir = self.dir_with(file).ok_or_else(|| Error::NoLimitFile { file: file.into() })?;
        let path = dir.join(file);
        std::fs::write(&path, value).map_err(|source| Error::WriteLimit { value: value.into(), path, source })
    }

    fn write_limits(&self, l: &Limits) -> Result<(), Error> {
        match self.version {
            Version::V1 => {
                if let Some(m) = l.memory {
                    self.set("memory.limit_in_bytes", &m.to_string())?;
                    // Without swap accounting the file is absent: the limit is on RAM only.
                    let _ = self.set("memory.memsw.limit_in_bytes", &m.to_string());
                }
                if let Some(p) = l.pids {
                    self.set("pids.max", &p.to_string())?;
                }
                if let Some(c) = l.cpus {
                    self.set("cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
                    self.set("cpu.cfs_quota_us", &(c as u64 * CFS_PERIOD_US).to_string())?;
                }
            }
            Version::V2 => {
                if let Some(m) = l.memory {
                    self.set("memory.max", &m.to_string())?;
                    let _ = self.set("memory.swap.max", "0");
                }
                if let Some(p) = l.pids {
                    self.set("pids.max", &p.to_string())?;
                }
                if let Some(c) = l.cpus {
                    self.set("cpu.max", &format!("{} {CFS_PERIOD_US}", c as u64 * CFS_PERIOD_US))?;
                }
            }
        }
        Ok(())
    }

    /// Moves `pid` into the cgroup (every controller's hierarchy on v1).
    pub fn enter(&self, pid: u32) -> Result<(), Error> {
        for d in &self.dirs {
            std::fs::write(d.join("cgroup.procs"), pid.to_string()).map_err(|source| Error::AddProcess {
                pid,
                path: d.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Whether the kernel's OOM killer acted inside the cgroup.
    pub fn hit_memory_limit(&self) -> bool {
        let (file, key) = match self.version {
            Version::V1 => ("memory.oom_control", "oom_kill"),
            Version::V2 => ("memory.events", "oom_kill"),
        };
        let Some(dir) = self.dir_with(file) else { return false };
        std::fs::read_to_string(dir.join(file)).unwrap_or_default().lines().any(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some(key) && f.next().and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 0)
        })
    }

    /// Removes the cgroup; its processes must be gone (they are reaped first), but the
    /// kernel may lag a moment behind, so this retries briefly.
    pub fn remove(&mut self) {
        for d in self.dirs.drain(..) {
            for _ in 0..100 {
                match std::fs::remove_dir(&d) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    _ => break,
                }
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_v1(d: &Path) -> (String, String) {
        for c in ["memory", "pids", "cpu"] {
            std::fs::create_dir_all(d.join(c).join("user")).unwrap();
        }
        let mounts = format!(
            "cgroup {0}/memory cgroup rw,memory 0 0\ncgroup {0}/pids cgroup rw,pids 0 0\ncgroup {0}/cpu cgroup rw,cpu 0 0\n",
            d.display()
        );
        (mounts, "4:memory:/user\n8:pids:/user\n1:cpu:/user\n0::/\n".into())
    }

    #[test]
    fn v1_limits_go_to_each_controllers_hierarchy_under_our_own_cgroup() {
        let d = tempfile::tempdir().unwrap();
        let (mounts, own) = fixture_v1(d.path());
        let limits = Limits { memory: Some(64 << 20), pids: Some(64), cpus: Some(2) };
        // A real kernel makes these files on mkdir; pre-create them for the fixture.
        let pre = |c: &str, files: &[&str]| {
            let dir = d.path().join(c).join("user/virt-sandbox-t");
            std::fs::create_dir_all(&dir).unwrap();
            for f in files {
                std::fs::write(dir.join(f), "").unwrap();
            }
            dir
        };
        let mem = pre("memory", &["memory.limit_in_bytes", "memory.oom_control", "cgroup.procs"]);
        let pids = pre("pids", &["pids.max", "cgroup.procs"]);
        let cpu = pre("cpu", &["cpu.cfs_period_us", "cpu.cfs_quota_us", "cgroup.procs"]);
        for dir in [&mem, &pids, &cpu] {
            std::fs::remove_dir_all(dir).unwrap();
        }
        // create() fails on the fixture because mkdir makes no files; check the paths it chose.
        let err = Cgroup::create(&limits, "t", &mounts, &own).unwrap_err();
        assert!(matches!(&err, Error::NoLimitFile { file } if file == "memory.limit_in_bytes"), "{err:?}");
        assert!(!mem.exists(), "a failed create removes what it made");
    }

    #[test]
    fn v2_is_used_when_no_v1_hierarchy_has_the_controller() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("user.slice")).unwrap();
        let mounts = format!("cgroup2 {} cgroup2 rw 0 0\n", d.path().display());
        let err = Cgroup::create(&Limits { pids: Some(10), ..Default::default() }, "x", &mounts, "0::/user.slice\n")
            .unwrap_err();
        assert!(matches!(&err, Error::NoLimitFile { file } if file == "pids.max"), "{err:?}");
        assert_eq!(std::fs::read_to_string(d.path().join("user.slice/cgroup.subtree_control")).unwrap(), "+pids");
    }

    #[test]
    fn oom_kill_count_is_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("memory.events"), "low 0\noom 1\noom_kill 1\n").unwrap();
        let cg = Cgroup { version: Version::V2, dirs: vec![d.path().to_path_buf()] };
        assert!(cg.hit_memory_limit());
        std::fs::write(d.path().join("memory.events"), "oom_kill 0\n").unwrap();
        assert!(!cg.hit_memory_limit());
        std::mem::forget(cg);
    }

    #[test]
    fn no_controller_anywhere_is_a_clear_error() {
        let err = Cgroup::create(&Limits { memory: Some(1 << 20), ..Default::default() }, "x", "", "").unwrap_err();
        assert!(matches!(err, Error::NoHierarchy), "{err:?}");
        assert!(err.to_string().starts_with("no cgroup hierarchy"), "{err}");
    }

    #[test]
    fn a_process_that_cannot_be_moved_names_the_cgroup_and_why() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("gone");
        let cg = Cgroup { version: Version::V2, dirs: vec![gone.clone()] };
        let err = cg.enter(42).unwrap_err();
        assert!(matches!(&err, Error::AddProcess { pid: 42, path, .. } if *path == gone), "{err:?}");
        let line = crate::exit::describe(&err);
        assert!(line.starts_with(&format!("cannot add pid 42 to the cgroup {}: ", gone.display())), "{line}");
        assert!(line.contains("No such file or directory"), "{line}");
    }
}
