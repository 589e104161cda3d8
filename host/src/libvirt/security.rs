//! `-s/--security`, as libvirt-sandbox spelled it: `dynamic`, `static,label=LABEL`,
//! `inherit`. Parsed in every build (a bad value is a usage error wherever it is given);
//! the libvirt backend turns it into the domain's `<seclabel>` for the host's model.

/// What `-s` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// A label chosen by libvirt for this domain (sVirt's default).
    Dynamic,
    /// This label, `USER:ROLE:TYPE:LEVEL` under SELinux.
    Static { label: String },
    /// The launcher's own label.
    Inherit,
}

/// Parses `-s VALUE`; the error says what is accepted.
pub fn parse(value: &str) -> Result<Security, String> {
    let mut parts = value.split(',');
    let kind = parts.next().unwrap_or_default();
    let mut label = None;
    for p in parts {
        match p.split_once('=') {
            Some(("label", l)) if !l.is_empty() => label = Some(l.to_string()),
            _ => return Err(format!("unknown part {p:?}")),
        }
    }
    match (kind, label) {
        ("dynamic", None) => Ok(Security::Dynamic),
        ("inherit", None) => Ok(Security::Inherit),
        ("static", Some(label)) => Ok(Security::Static { label }),
        ("static", None) => Err("static needs label=USER:ROLE:TYPE:LEVEL".into()),
        ("dynamic" | "inherit", Some(_)) => Err(format!("{kind} takes no label")),
        _ => Err("use dynamic, static,label=USER:ROLE:TYPE:LEVEL or inherit".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_sandboxs_spellings() {
        assert_eq!(parse("dynamic"), Ok(Security::Dynamic));
        assert_eq!(parse("inherit"), Ok(Security::Inherit));
        assert_eq!(
            parse("static,label=system_u:system_r:svirt_t:s0:c1"),
            Ok(Security::Static { label: "system_u:system_r:svirt_t:s0:c1".into() })
        );
        assert!(parse("static").unwrap_err().contains("label="));
        assert!(parse("dynamic,label=x").unwrap_err().contains("no label"));
        assert!(parse("static,lable=x").unwrap_err().contains("lable"));
        assert!(parse("selinux").unwrap_err().contains("dynamic"));
    }
}
