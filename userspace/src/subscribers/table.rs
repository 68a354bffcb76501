//! The subscriber table file: CSV with a header `id,name,plan,prefixes`, one subscriber a row,
//! its prefixes (IPv4 and IPv6, any length) separated by spaces or ';'. Lines starting with '#'
//! are comments. Every bad row is reported, each with its line and field.

use std::{
    borrow::Cow,
    collections::HashMap,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;

/// One subscriber as the table declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// Stable identifier (letters, digits, '.', '_', '-'; at most 64).
    pub id: String,
    /// Display name, free text.
    pub name: String,
    /// Plan (tariff) name.
    pub plan: String,
    /// Prefixes the subscriber owns, host bits clear.
    pub prefixes: Vec<IpNet>,
}

/// A parsed, consistent subscriber table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub subscribers: Vec<Subscriber>,
}

/// One problem in a table file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError {
    pub path: PathBuf,
    pub line: u64,
    /// The field or column at fault (`prefixes`, `IPv4`, a configured plan column).
    pub field: Cow<'static, str>,
    pub message: String,
}

impl TableError {
    /// A problem at `line` of `path`, in `field`.
    pub(crate) fn new(
        path: &Path,
        line: u64,
        field: impl Into<Cow<'static, str>>,
        message: String,
    ) -> TableError {
        TableError {
            path: path.to_owned(),
            line,
            field: field.into(),
            message,
        }
    }
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.path.display(),
            self.line,
            self.field,
            self.message
        )
    }
}

/// Every problem found in a table file (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TableErrors(pub Vec<TableError>);

impl fmt::Display for TableErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} error{} in the subscriber table:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

const HEADER: [&str; 4] = ["id", "name", "plan", "prefixes"];

/// The prefixes cell of a subscriber whose addresses are bound live (RADIUS, DHCP), not listed.
pub const DYNAMIC: &str = "dynamic";

/// A reader for quid's CSV files: the header is checked by hand (to report it), rows may have
/// the wrong field count (reported per row), `#` starts a comment, fields are trimmed.
pub(crate) fn csv_reader(bytes: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(bytes)
}

/// The line a record of `csv_reader` starts on. The reader places a record at the first byte
/// after the previous one, before the comment and blank lines it skipped, so its own line
/// number would name a comment above the row.
pub(crate) fn record_line(bytes: &[u8], record: &csv::StringRecord) -> u64 {
    let Some(pos) = record.position() else {
        return 0;
    };
    let (mut line, mut at) = (
        pos.line(),
        usize::try_from(pos.byte()).unwrap_or(usize::MAX),
    );
    while let Some(rest) = bytes.get(at..) {
        let skipped = match rest.first() {
            Some(b'#') => true,
            Some(b'\n') => true,
            Some(b'\r') => rest.get(1) == Some(&b'\n'),
            _ => false,
        };
        if !skipped {
            break;
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                at += n + 1;
                line += 1;
            }
            None => break,
        }
    }
    line
}

/// The records of a quid CSV file (`csv_reader`), each with the line it starts on; a record
/// that is not valid CSV is an error naming its line.
pub(crate) fn records<'a>(
    bytes: &'a [u8],
    path: &'a Path,
) -> impl Iterator<Item = Result<(u64, csv::StringRecord), TableError>> + 'a {
    csv_reader(bytes).into_records().map(move |r| match r {
        Ok(record) => Ok((record_line(bytes, &record), record)),
        Err(e) => Err(TableError {
            path: path.to_owned(),
            line: e.position().map_or(0, |p| p.line()),
            field: "row".into(),
            message: format!("not valid CSV: {e}"),
        }),
    })
}

/// The bytes of a CSV file, or the error naming it (`what`: "the subscriber table", ...).
pub(crate) fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, TableErrors> {
    std::fs::read(path).map_err(|e| {
        TableErrors(vec![TableError {
            path: path.to_owned(),
            line: 0,
            field: "file".into(),
            message: format!("cannot read {what}: {e}"),
        }])
    })
}

impl Table {
    /// Parses and checks table bytes; `path` only names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Table, TableErrors> {
        let mut errors = Vec::new();
        let error_at = |line: u64, field: &'static str, message: String| TableError {
            path: path.to_owned(),
            line,
            field: field.into(),
            message,
        };
        let mut subscribers = Vec::new();
        let mut ids: HashMap<String, u64> = HashMap::new();
        let mut owners: HashMap<IpNet, (u64, String)> = HashMap::new();
        let mut header_seen = false;
        for record in records(bytes, path) {
            let Ok((line, record)) = record.map_err(|e| errors.push(e)) else {
                continue;
            };
            if !header_seen {
                header_seen = true;
                let got: Vec<String> = record.iter().map(|f| f.to_ascii_lowercase()).collect();
                if got != HEADER {
                    errors.push(error_at(
                        line,
                        "header",
                        format!(
                            "the first row must be `id,name,plan,prefixes`, found `{}`",
                            record.iter().collect::<Vec<_>>().join(",")
                        ),
                    ));
                    // Without the header we cannot trust the column order: stop here.
                    break;
                }
                continue;
            }
            if record.len() != 4 {
                errors.push(error_at(
                    line,
                    "row",
                    format!(
                        "expected 4 fields (id,name,plan,prefixes), found {}",
                        record.len()
                    ),
                ));
                continue;
            }
            let (id, name, plan, prefixes) = (&record[0], &record[1], &record[2], &record[3]);
            // Problems of this row: (field, message).
            let mut bad: Vec<(&'static str, String)> = Vec::new();
            if let Err(m) = check_token(id, 64) {
                bad.push(("id", m));
            } else if let Some(first) = ids.get(id) {
                bad.push((
                    "id",
                    format!("subscriber `{id}` is already defined on line {first}"),
                ));
            }
            if name.chars().count() > 128 || name.chars().any(char::is_control) {
                bad.push(("name", "must be at most 128 printable characters".into()));
            }
            if let Err(m) = check_token(plan, 64) {
                bad.push(("plan", m));
            }
            let mut nets = Vec::new();
            // `dynamic`: the subscriber's addresses come from live bindings (RADIUS, DHCP).
            let dynamic = prefixes.eq_ignore_ascii_case(DYNAMIC);
            for text in prefixes
                .split(|c: char| c == ';' || c.is_whitespace())
                .filter(|s| !s.is_empty() && !dynamic)
            {
                match parse_prefix(text) {
                    Err(m) => bad.push(("prefixes", m)),
                    Ok(net) => match owners.get(&net) {
                        Some((l, owner)) => bad.push((
                            "prefixes",
                            format!("{net} is already owned by subscriber `{owner}` (line {l})"),
                        )),
                        None if nets.contains(&net) => {
                            bad.push(("prefixes", format!("{net} is listed twice")))
                        }
                        None => nets.push(net),
                    },
                }
            }
            if nets.is_empty() && bad.is_empty() && !dynamic {
                bad.push((
                    "prefixes",
                    "a subscriber needs at least one prefix, or `dynamic` when its addresses \
                     come from RADIUS or DHCP"
                        .into(),
                ));
            }
            if !bad.is_empty() {
                errors.extend(
                    bad.into_iter()
                        .map(|(field, message)| error_at(line, field, message)),
                );
            } else {
                ids.insert(id.to_owned(), line);
                for net in &nets {
                    owners.insert(*net, (line, id.to_owned()));
                }
                subscribers.push(Subscriber {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    plan: plan.to_owned(),
                    prefixes: nets,
                });
            }
        }
        if !header_seen {
            errors.push(error_at(
                1,
                "header",
                "the table is empty: it needs the header `id,name,plan,prefixes`".into(),
            ));
        }
        if errors.is_empty() {
            Ok(Table { subscribers })
        } else {
            Err(TableErrors(errors))
        }
    }

    /// Number of prefixes per family: (IPv4, IPv6).
    pub fn prefix_counts(&self) -> (usize, usize) {
        let all = self.subscribers.iter().flat_map(|s| &s.prefixes);
        let v4 = all.clone().filter(|p| matches!(p, IpNet::V4(_))).count();
        (v4, all.count() - v4)
    }
}

/// Checks an identifier (subscriber, plan, node): 1 to `max` letters, digits, '.', '_' or
/// '-', so it can never be mistaken in a CSV, a URL, a metric label or a terminal.
pub(crate) fn check_token(s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    // Escaped: a control character in the message must not drive the operator's terminal.
    let shown = s.escape_debug();
    if s.len() > max {
        return Err(format!("`{shown}` is longer than {max} characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{shown}` contains {c:?}; use letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(())
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`): packets never carry them, IPv4 traffic is
/// looked up as IPv4, so a prefix here would silently count nothing.
const MAPPED: ipnet::Ipv6Net =
    ipnet::Ipv6Net::new_assert(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);

/// A prefix (`100.64.0.8/29`) or a bare address (a host prefix).
pub(crate) fn parse_prefix(text: &str) -> Result<IpNet, String> {
    let net = if text.contains('/') {
        text.parse::<IpNet>()
            .map_err(|_| format!("`{text}` is not an IPv4 or IPv6 prefix"))?
    } else {
        let addr: IpAddr = text
            .parse()
            .map_err(|_| format!("`{text}` is not an IPv4 or IPv6 address or prefix"))?;
        IpNet::from(addr)
    };
    check_prefix(net, text)
}

/// Checks a prefix a subscriber may own, whether from the table or from a live binding
/// (RADIUS, DHCP); `text` is how its source wrote it, for the message.
pub(crate) fn check_prefix(net: IpNet, text: &str) -> Result<IpNet, String> {
    if net.prefix_len() == 0 {
        return Err(format!(
            "`{text}` covers the whole address space; a subscriber cannot own it"
        ));
    }
    if let IpNet::V6(v6) = net {
        if MAPPED.contains(&v6) {
            let v4 = ipnet::Ipv4Net::new(
                v6.network()
                    .to_ipv4_mapped()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                v6.prefix_len().saturating_sub(96),
            )
            .map_or_else(|_| "the IPv4 prefix".into(), |n| n.to_string());
            return Err(format!(
                "`{text}` is an IPv4-mapped IPv6 prefix, which no packet carries; write it \
                 as {v4}"
            ));
        }
        if v6.contains(&MAPPED) {
            return Err(format!(
                "`{text}` covers the IPv4-mapped range ::ffff:0:0/96, which no packet \
                 carries; use a prefix outside it"
            ));
        }
    }
    if net.trunc() != net {
        return Err(format!(
            "`{text}` has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Table, Vec<String>> {
        Table::parse(text.as_bytes(), Path::new("subs.csv"))
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn subscribers_with_several_prefixes_of_both_families_parse() {
        let t = parse(
            "id,name,plan,prefixes\n\
             # a comment\n\
             alice,Alice Farm,home-50,100.64.0.10/32 2001:db8:100::/56\n\
             bob,\"Bob, Ltd\",biz,198.51.100.8/29;2001:db8:200::/48; 203.0.113.7\n",
        )
        .unwrap();
        assert_eq!(t.subscribers.len(), 2);
        assert_eq!(t.subscribers[1].name, "Bob, Ltd");
        let bob: Vec<String> = t.subscribers[1]
            .prefixes
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            bob,
            ["198.51.100.8/29", "2001:db8:200::/48", "203.0.113.7/32"]
        );
        assert_eq!(t.prefix_counts(), (3, 2));
    }

    #[test]
    fn every_bad_row_is_reported_with_line_and_field() {
        let errs = parse(
            "id,name,plan,prefixes\n\
             a,A,home,100.64.0.1/32\n\
             a,Again,home,100.64.0.2/32\n\
             b,B,home,100.64.0.1/32\n\
             c,C,home,100.64.0.9/29\n\
             d,D,home,not-an-address\n\
             e e,E,home,100.64.1.1\n\
             f,F,,100.64.1.2\n\
             g,G,home,\n\
             h,H,home\n\
             i,I,home,0.0.0.0/0\n",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "subs.csv:3: id: subscriber `a` is already defined on line 2",
                "subs.csv:4: prefixes: 100.64.0.1/32 is already owned by subscriber `a` (line 2)",
                "subs.csv:5: prefixes: `100.64.0.9/29` has host bits set; did you mean 100.64.0.8/29?",
                "subs.csv:6: prefixes: `not-an-address` is not an IPv4 or IPv6 address or prefix",
                "subs.csv:7: id: `e e` contains ' '; use letters, digits, '.', '_' or '-'",
                "subs.csv:8: plan: must not be empty",
                "subs.csv:9: prefixes: a subscriber needs at least one prefix, or `dynamic` when its addresses come from RADIUS or DHCP",
                "subs.csv:10: row: expected 4 fields (id,name,plan,prefixes), found 3",
                "subs.csv:11: prefixes: `0.0.0.0/0` covers the whole address space; a subscriber cannot own it",
            ]
        );
    }

    #[test]
    fn a_subscriber_whose_addresses_are_bound_live_is_written_dynamic() {
        let table = parse(
            "id,name,plan,prefixes\n\
             pppoe-1,Dial-up Dana,home,dynamic\n\
             fixed,Fixed Fay,home,192.0.2.9 DYNAMIC\n",
        );
        // `dynamic` stands alone: mixed with prefixes it is a bad prefix, not a mode.
        assert_eq!(
            table.unwrap_err(),
            ["subs.csv:3: prefixes: `DYNAMIC` is not an IPv4 or IPv6 address or prefix"]
        );
        let table = parse("id,name,plan,prefixes\npppoe-1,Dial-up Dana,home,Dynamic\n").unwrap();
        assert!(table.subscribers[0].prefixes.is_empty());
    }

    #[test]
    fn ipv4_mapped_prefixes_and_ids_with_spaces_or_control_characters_are_refused() {
        let errs = parse(
            "id,name,plan,prefixes\n\
             a,A,home,::ffff:192.0.2.1\n\
             b,B,home,::ffff:198.51.100.0/120\n\
             c,C,home,::/64\n\
             \"d d\",D,home,192.0.2.4\n\
             \"e\u{1b}[2J\",E,home,192.0.2.5\n\
             \"f\tg\",F,home,192.0.2.6\n",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "subs.csv:2: prefixes: `::ffff:192.0.2.1` is an IPv4-mapped IPv6 prefix, which no packet carries; write it as 192.0.2.1/32",
                "subs.csv:3: prefixes: `::ffff:198.51.100.0/120` is an IPv4-mapped IPv6 prefix, which no packet carries; write it as 198.51.100.0/24",
                "subs.csv:4: prefixes: `::/64` covers the IPv4-mapped range ::ffff:0:0/96, which no packet carries; use a prefix outside it",
                "subs.csv:5: id: `d d` contains ' '; use letters, digits, '.', '_' or '-'",
                "subs.csv:6: id: `e\\u{1b}[2J` contains '\\u{1b}'; use letters, digits, '.', '_' or '-'",
                "subs.csv:7: id: `f\\tg` contains '\\t'; use letters, digits, '.', '_' or '-'",
            ]
        );
    }

    #[test]
    fn a_bad_row_after_comment_and_blank_lines_names_its_own_line() {
        let errs =
            parse("# comment\nid,name,plan,prefixes\n# a comment\n\r\n\n#another\na,A,home,x\n")
                .unwrap_err();
        assert_eq!(
            errs,
            ["subs.csv:7: prefixes: `x` is not an IPv4 or IPv6 address or prefix"]
        );
    }

    #[test]
    fn a_wrong_header_stops_parsing() {
        let errs = parse("name,id,plan,prefixes\nalice,a,home,100.64.0.1\n").unwrap_err();
        assert_eq!(
            errs,
            [
                "subs.csv:1: header: the first row must be `id,name,plan,prefixes`, found `name,id,plan,prefixes`"
            ]
        );
    }

    #[test]
    fn an_empty_file_is_refused() {
        let errs = parse("").unwrap_err();
        assert!(errs[0].contains("the table is empty"), "{errs:?}");
    }

    #[test]
    fn nested_prefixes_of_different_owners_are_allowed() {
        let t =
            parse("id,name,plan,prefixes\nbiz,B,biz,100.64.0.0/29\nhome,H,home,100.64.0.5/32\n")
                .unwrap();
        assert_eq!(t.subscribers.len(), 2);
    }
}
