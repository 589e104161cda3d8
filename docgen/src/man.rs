//! virt-sandbox(1): clap_mangen's sections for what clap knows (name, synopsis,
//! description, every option with its default, possible values and variable), then
//! ours for what it does not (exit status, environment, files, examples).

use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use crate::sections::{self, Block, Section};

/// The page clap_mangen renders each piece with: every chunk it writes starts with the
/// same definition of the apostrophe string, which the page needs only once.
const APOSTROPHE_PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// The whole page, as roff. `date` is the page's (YYYY-MM-DD): an empty one would shift
/// .TH's later fields (the footer would say the version where the date goes).
pub fn render(cmd: clap::Command, date: &str) -> Vec<u8> {
    let man = Man::new(cmd).date(date).manual("User Commands");
    let mut page = Vec::new();
    type Part = fn(&Man, &mut dyn std::io::Write) -> std::io::Result<()>;
    let clap_parts: [Part; 5] = [
        Man::render_title,
        Man::render_name_section,
        Man::render_synopsis_section,
        Man::render_description_section,
        Man::render_options_section,
    ];
    for part in clap_parts {
        append(&mut page, |w| part(&man, w));
    }
    append(&mut page, |w| ours(&sections::all()).to_writer(w));
    append(&mut page, |w| man.render_version_section(w));
    page
}

/// The date of a page built at `epoch` (seconds since 1970), as YYYY-MM-DD: the
/// reproducible-builds convention passes the source's date as SOURCE_DATE_EPOCH.
pub fn date(epoch: u64) -> String {
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = (epoch / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Appends one rendered chunk, without its repeated preamble.
fn append(page: &mut Vec<u8>, render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
    let mut chunk = Vec::new();
    render(&mut chunk).expect("writing to a Vec does not fail");
    let body = match page.is_empty() {
        true => &chunk[..],
        false => chunk.strip_prefix(APOSTROPHE_PREAMBLE.as_bytes()).unwrap_or(&chunk),
    };
    page.extend_from_slice(body);
}

/// Our sections in roff: paragraphs, tagged items, indented literal examples.
fn ours(list: &[Section]) -> Roff {
    let mut roff = Roff::new();
    for section in list {
        roff.control("SH", [section.title]);
        for block in &section.blocks {
            match block {
                Block::Para(text) => {
                    roff.control("PP", []);
                    roff.text([roman(text.as_str())]);
                }
                Block::Item(term, text) => {
                    roff.control("TP", []);
                    roff.text([bold(term.as_str())]);
                    roff.text([roman(text.as_str())]);
                }
                Block::Example(text, code) => {
                    roff.control("PP", []);
                    roff.text([roman(text.as_str())]);
                    roff.control("PP", []);
                    roff.control("RS", ["4"]);
                    roff.control("nf", []);
                    for line in code.lines() {
                        roff.text([roman(line)]);
                    }
                    roff.control("fi", []);
                    roff.control("RE", []);
                }
            }
        }
    }
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> String {
        String::from_utf8(render(crate::command(), "2026-12-07")).unwrap()
    }

    #[test]
    fn the_title_line_has_every_field_in_its_place() {
        assert!(page().contains("\n.TH virt-sandbox 1 2026-12-07 \"virt-sandbox "), "{}", page());
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_796_083_199), "2026-11-30");
    }

    #[test]
    fn has_every_section_a_user_looks_for() {
        let page = page();
        for title in
            ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "\"EXIT STATUS\"", "ENVIRONMENT", "FILES", "EXAMPLES"]
        {
            assert!(page.contains(&format!("\n.SH {title}\n")), "no {title} section in\n{page}");
        }
        assert_eq!(page.matches(".ds Aq").count(), 2, "the apostrophe preamble once (.ie/.el)");
    }

    #[test]
    fn names_every_visible_option_with_its_default() {
        let page = page();
        for arg in crate::command().get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                assert!(page.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))), "--{long} missing");
            }
            for default in arg.get_default_values() {
                let shown = format!("[default: {}]", default.to_string_lossy());
                assert!(page.contains(&shown), "--{:?}: {shown} missing", arg.get_long());
            }
        }
    }

    #[test]
    fn examples_are_literal_blocks() {
        let page = page();
        assert!(
            page.contains(".nf\nCARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=\"virt\\-sandbox \\-\\-\" cargo test\n")
        );
    }
}
