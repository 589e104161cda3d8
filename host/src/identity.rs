//! Who the command runs as: users resolved on the host through NSS (the guest has no
//! user database of its own that we could trust to match).

use std::ffi::{CStr, CString};

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

/// The host's NSS.
pub struct HostUsers;

impl UserDb for HostUsers {
    fn by_name(&self, name: &str) -> Option<User> {
        let name = CString::new(name).ok()?;
        lookup(|pwd, buf, res| {
            // SAFETY: all pointers are valid for the call; buf's length is passed.
            unsafe { libc::getpwnam_r(name.as_ptr(), pwd, buf.as_mut_ptr(), buf.len(), res) }
        })
    }

    fn by_uid(&self, uid: u32) -> Option<User> {
        lookup(|pwd, buf, res| {
            // SAFETY: as above.
            unsafe { libc::getpwuid_r(uid, pwd, buf.as_mut_ptr(), buf.len(), res) }
        })
    }

    fn groups(&self, user: &User) -> Vec<u32> {
        let Ok(name) = CString::new(user.name.as_str()) else { return vec![user.gid] };
        let mut n: libc::c_int = 64;
        loop {
            let mut groups = vec![0 as libc::gid_t; n as usize];
            let cap = n;
            // SAFETY: groups has room for n entries; n is updated to the needed count.
            let r = unsafe { libc::getgrouplist(name.as_ptr(), user.gid, groups.as_mut_ptr(), &mut n) };
            if r >= 0 {
                groups.truncate(n as usize);
                return groups;
            }
            if n <= cap {
                n = cap * 2;
            }
        }
    }
}

fn lookup(
    call: impl Fn(*mut libc::passwd, &mut [libc::c_char], *mut *mut libc::passwd) -> libc::c_int,
) -> Option<User> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data; zeroed is a valid initial value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut res = std::ptr::null_mut();
    if call(&mut pwd, &mut buf, &mut res) != 0 || res.is_null() {
        return None;
    }
    // SAFETY: on success pw_name and pw_dir point at NUL-terminated strings inside buf.
    let (name, home) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
    Some(User {
        name: name.to_string_lossy().into_owned(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home: home.to_string_lossy().into_owned(),
    })
}

/// The calling process's supplementary groups.
pub fn current_groups() -> Vec<u32> {
    // SAFETY: getgroups(0, NULL) returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut groups = vec![0; n as usize];
    // SAFETY: groups has room for n entries.
    let n = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    groups.truncate(n.max(0) as usize);
    groups
}
