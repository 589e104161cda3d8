//! Resolves kernel modules, and the order to load them in, from the indexes that `depmod`
//! writes into `/lib/modules/<version>`.
//!
//! The modules a sandbox needs differ between kernels (virtio may be built in or a module,
//! `9p` pulls `netfs` and `fscache` on one kernel and not another), so nothing here is a
//! fixed list: the answer comes from the kernel's own `modules.dep`, `modules.builtin` and
//! `modules.alias`. The directory is a parameter so tests run on a fixture tree.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use crate::Error;

/// Whether, and how, a kernel provides a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Built into the kernel image: nothing to load.
    Builtin,
    /// A loadable module at this absolute path.
    Module(PathBuf),
    /// Neither built in nor a module of this kernel.
    Missing,
}

/// A module to put into the initrd, in load order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModule {
    /// The module's name as the kernel knows it (`-` written as `_`): `virtio_mmio`.
    pub name: String,
    /// Absolute path of its (possibly compressed) file.
    pub path: PathBuf,
}

/// One loadable module from `modules.dep`.
#[derive(Debug)]
struct Entry {
    /// Path as written in `modules.dep`, relative to the directory.
    rel: PathBuf,
    /// Names of the modules it needs, as listed (all transitive ones, in no useful order).
    deps: Vec<String>,
}

/// The module indexes of one kernel.
#[derive(Debug)]
pub struct ModuleTree {
    dir: PathBuf,
    loadable: HashMap<String, Entry>,
    builtin: HashSet<String>,
    /// `(pattern, module)` pairs, both normalised, in file order: built-ins' aliases first.
    /// Read on the first name that is no module's: a distribution kernel's modules.alias
    /// is over 1 MiB, and parsing it was most of a launch's module work (the sandbox's
    /// own modules are asked for by name).
    aliases: std::sync::OnceLock<Vec<(String, String)>>,
}

impl ModuleTree {
    /// Reads the indexes in `dir` (`/lib/modules/<version>`).
    ///
    /// `modules.dep` must exist; `modules.builtin`, `modules.builtin.modinfo` and
    /// `modules.alias` are read when present (a kernel without modules support has none).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let dep_path = dir.join("modules.dep");
        // Without modules.dep nothing can be resolved (an empty one is fine: no modules).
        let Some(dep) = read_index(&dep_path)? else {
            return Err(Error::ReadModuleIndex { path: dep_path, source: io::Error::from(io::ErrorKind::NotFound) });
        };
        let mut tree = ModuleTree {
            dir: dir.to_owned(),
            loadable: HashMap::new(),
            builtin: HashSet::new(),
            aliases: Default::default(),
        };
        tree.parse_dep(&dep, &dep_path)?;

        if let Some(text) = read_index(&dir.join("modules.builtin"))? {
            let names = text.lines().filter(|l| !l.trim().is_empty());
            tree.builtin.extend(names.map(|l| module_name(l.trim())));
        }
        Ok(tree)
    }

    /// The alias table, read once.
    fn aliases(&self) -> Result<&[(String, String)], Error> {
        if let Some(a) = self.aliases.get() {
            return Ok(a);
        }
        let mut aliases = Vec::new();
        // NUL-separated `module.key=value` records; the aliases of built-in modules
        // (`virtiofs.alias=fs-virtiofs`) are only here, not in modules.alias.
        if let Some(text) = read_index(&self.dir.join("modules.builtin.modinfo"))? {
            for record in text.split('\0') {
                if let Some((module, alias)) = record.split_once(".alias=") {
                    aliases.push((normalise_alias(alias), normalise_name(module)));
                }
            }
        }
        if let Some(text) = read_index(&self.dir.join("modules.alias"))? {
            for line in text.lines() {
                let mut words = line.split_whitespace();
                if let (Some("alias"), Some(pattern), Some(module)) = (words.next(), words.next(), words.next()) {
                    aliases.push((normalise_alias(pattern), normalise_name(module)));
                }
            }
        }
        Ok(self.aliases.get_or_init(|| aliases))
    }

    fn parse_dep(&mut self, text: &str, path: &Path) -> Result<(), Error> {
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((module, deps)) = line.split_once(':') else {
                return Err(Error::ParseModuleDep { path: path.to_owned(), line: index + 1 });
            };
            let module = module.trim();
            let mut dep_names = Vec::new();
            for dep in deps.split_whitespace() {
                let name = module_name(dep);
                // depmod gives every module its own line, but do not rely on it: a dep
                // only named here still has a known file.
                self.loadable
                    .entry(name.clone())
                    .or_insert_with(|| Entry { rel: PathBuf::from(dep), deps: Vec::new() });
                dep_names.push(name);
            }
            let name = module_name(module);
            let entry =
                self.loadable.entry(name).or_insert_with(|| Entry { rel: PathBuf::from(module), deps: Vec::new() });
            // The first line wins for a duplicate name, as with depmod's search order;
            // a placeholder created from a dep list takes its own line's deps.
            if entry.deps.is_empty() && entry.rel == Path::new(module) {
                entry.deps = dep_names;
            }
        }
        Ok(())
    }

    /// The modules directory this tree was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this kernel has `name`, given as a module name (`virtio-mmio` or
    /// `virtio_mmio`) or an alias (`fs-9p`, `virtio:d00000009v00001AF4`).
    pub fn availability(&self, name: &str) -> Availability {
        match self.canonical(name).ok().flatten() {
            Some(module) if self.builtin.contains(&module) => Availability::Builtin,
            Some(module) => match self.loadable.get(&module) {
                Some(entry) => Availability::Module(self.dir.join(&entry.rel)),
                None => Availability::Missing,
            },
            None => Availability::Missing,
        }
    }

    /// The load order for the `wanted` modules or aliases: dependencies before the
    /// modules that need them, each module once, built-ins left out (a built-in needs
    /// no file). A wanted module this kernel lacks is an error naming it.
    ///
    /// `modules.dep` lists every transitive dependency of a module but not in load
    /// order, so this is a depth-first topological sort over the whole graph.
    pub fn resolve(&self, wanted: &[&str]) -> Result<Vec<ResolvedModule>, Error> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        for want in wanted {
            let missing = || Error::MissingModule { name: (*want).to_owned(), dir: self.dir.clone() };
            let module = self.canonical(want)?.ok_or_else(missing)?;
            if self.builtin.contains(&module) {
                continue;
            }
            if !self.loadable.contains_key(&module) {
                return Err(missing());
            }
            self.visit(&module, &mut Vec::new(), &mut done, &mut order)?;
        }
        Ok(order)
    }

    /// Appends `module` to `order` after everything it depends on. `stack` holds the
    /// modules being visited, to report a cycle instead of recursing for ever.
    fn visit(
        &self,
        module: &str,
        stack: &mut Vec<String>,
        done: &mut HashSet<String>,
        order: &mut Vec<ResolvedModule>,
    ) -> Result<(), Error> {
        if done.contains(module) || self.builtin.contains(module) {
            return Ok(());
        }
        if stack.iter().any(|m| m == module) {
            return Err(Error::ModuleDepCycle { name: module.to_owned(), dir: self.dir.clone() });
        }
        let Some(entry) = self.loadable.get(module) else {
            // Unreachable with parse_dep's placeholders; a dependency nobody provides
            // is reported as missing rather than skipped.
            return Err(Error::MissingModule { name: module.to_owned(), dir: self.dir.clone() });
        };
        stack.push(module.to_owned());
        for dep in &entry.deps {
            self.visit(dep, stack, done, order)?;
        }
        stack.pop();
        done.insert(module.to_owned());
        order.push(ResolvedModule { name: module.to_owned(), path: self.dir.join(&entry.rel) });
        Ok(())
    }

    /// The module name that `name` means: itself when it is a module, else the first
    /// module whose alias pattern matches it.
    fn canonical(&self, name: &str) -> Result<Option<String>, Error> {
        let as_module = normalise_name(name);
        if self.builtin.contains(&as_module) || self.loadable.contains_key(&as_module) {
            return Ok(Some(as_module));
        }
        let as_alias = normalise_alias(name);
        Ok(self
            .aliases()?
            .iter()
            .find(|(pattern, _)| glob_match(pattern.as_bytes(), as_alias.as_bytes()))
            .map(|(_, module)| module.clone()))
    }
}

/// Reads an index file; `None` when it does not exist.
fn read_index(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::ReadModuleIndex { path: path.to_owned(), source }),
    }
}

/// The module name of an index path: `kernel/net/9p/9pnet_virtio.ko.xz` -> `9pnet_virtio`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = match file.find(".ko") {
        Some(at) => &file[..at],
        None => file,
    };
    normalise_name(stem)
}

/// The kernel treats `-` and `_` in module names alike; `_` is the canonical form.
fn normalise_name(name: &str) -> String {
    name.replace('-', "_")
}

/// As kmod's `alias_normalize`: `-` becomes `_` except inside `[...]`, where it
/// denotes a range.
fn normalise_alias(alias: &str) -> String {
    let mut in_brackets = false;
    alias
        .chars()
        .map(|c| match c {
            '[' => {
                in_brackets = true;
                c
            }
            ']' => {
                in_brackets = false;
                c
            }
            '-' if !in_brackets => '_',
            c => c,
        })
        .collect()
}

/// `fnmatch(3)` without flags, as modprobe matches `modules.alias` patterns: `*`, `?`
/// and `[...]` (with ranges and `!`/`^` negation).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: the pattern just past it, and the text
    // position it has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match_class(pattern, p, text[t]),
            Some(&c) if c == text[t] => Some(p + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((after_star, swallowed))) => {
                p = after_star;
                t = swallowed + 1;
                star = Some((after_star, swallowed + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[open] == b'['`; on a match,
/// the index just past the closing `]`. An unclosed `[` matches nothing.
fn match_class(pattern: &[u8], open: usize, c: u8) -> Option<usize> {
    let mut i = open + 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &lo = pattern.get(i)?;
        if lo == b']' && !first {
            break;
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&b| b != b']') {
            matched |= (lo..=pattern[i + 2]).contains(&c);
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    (matched != negate).then_some(i + 1)
}

#[cfg(test)]
#[path = "modules_tests.rs"]
mod tests;
