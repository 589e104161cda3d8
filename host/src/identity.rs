//! Who the command runs as: users resolved on the host (the guest has no user database
//! of its own that we could trust to match).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// The user database; a trait so that spec building is testable without NSS.
pub trait UserDb {
    fn by_name(&self, name: &str) -> Option<User>;
    fn by_uid(&self, uid: u32) -> Option<User>;
    /// Supplementary groups of `user`, including `gid`.
    fn groups(&self, user: &User) -> Vec<u32>;
}

/// The host's user database: `/etc/passwd` first, then `getent` for anyone it does not
/// list (LDAP, sssd, systemd-homed); groups through `getent initgroups`. The launcher is linked
/// statically, and a static glibc must not load NSS modules itself (a miss that reaches
/// one crashed it here), so those answers come from a dynamically linked `getent`.
pub struct HostUsers;

impl UserDb for HostUsers {
    fn by_name(&self, name: &str) -> Option<User> {
        host_user(name, |u| u.name == name)
    }

    fn by_uid(&self, uid: u32) -> Option<User> {
        host_user(&uid.to_string(), |u| u.uid == uid)
    }

    fn groups(&self, user: &User) -> Vec<u32> {
        // getent's "initgroups" asks every group service, files included, as login
        // does; the group file alone only where getent is missing.
        let supplementary: Vec<u32> = match getent(&["initgroups", &user.name]) {
            Some(out) => out.split_whitespace().skip(1).filter_map(|g| g.parse().ok()).collect(),
            None => std::fs::read_to_string("/etc/group").map(|db| member_of(&db, &user.name)).unwrap_or_default(),
        };
        let mut groups = vec![user.gid];
        for g in supplementary {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        groups
    }
}

/// A user from /etc/passwd, else from `getent passwd KEY`.
fn host_user(key: &str, matches: impl Fn(&User) -> bool) -> Option<User> {
    let local = std::fs::read_to_string("/etc/passwd").ok().and_then(|db| passwd_entry(&db, &matches));
    local.or_else(|| getent(&["passwd", key]).and_then(|out| passwd_entry(&out, &matches)))
}

/// The first `passwd(5)` line whose user matches.
fn passwd_entry(db: &str, matches: impl Fn(&User) -> bool) -> Option<User> {
    db.lines().filter_map(parse_passwd).find(|u| matches(u))
}

fn parse_passwd(line: &str) -> Option<User> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 || f[0].is_empty() || f[0].starts_with('#') {
        return None;
    }
    Some(User { name: f[0].into(), uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5].into() })
}

/// The gids of the `group(5)` lines that list `name` as a member.
fn member_of(db: &str, name: &str) -> Vec<u32> {
    db.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4 && f[3].split(',').any(|m| m == name)).then(|| f[2].parse().ok()).flatten()
        })
        .collect()
}

/// `getent DATABASE KEY`'s output, when it found something.
fn getent(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("getent").args(args).stderr(std::process::Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The calling process's supplementary groups.
pub fn current_groups() -> Vec<u32> {
    rustix::process::getgroups().map(|g| g.into_iter().map(|g| g.as_raw()).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\n# a comment\nbroken line\nalice:x:1000:100:Alice:/home/alice:/bin/sh\n";

    #[test]
    fn passwd_lines_by_name_and_uid() {
        let alice = passwd_entry(PASSWD, |u| u.name == "alice").unwrap();
        assert_eq!(alice, User { name: "alice".into(), uid: 1000, gid: 100, home: "/home/alice".into() });
        assert_eq!(passwd_entry(PASSWD, |u| u.uid == 0).unwrap().name, "root");
        assert!(passwd_entry(PASSWD, |u| u.name == "bob").is_none());
    }

    #[test]
    fn group_membership_is_by_exact_name() {
        let db = "wheel:x:10:root,alice\naudio:x:29:alicex\nvideo:x:44:bob,alice\n";
        assert_eq!(member_of(db, "alice"), vec![10, 44]);
    }

    #[test]
    fn the_host_database_knows_root_and_not_a_made_up_name() {
        assert_eq!(HostUsers.by_uid(0).unwrap().name, "root");
        assert!(HostUsers.by_name("no-such-user-virt-sandbox").is_none());
    }
}
