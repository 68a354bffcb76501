//! LibreQoS's `ShapedDevices.csv` read as a subscriber table (`[subscribers] format =
//! "libreqos"`): one row per device; the rows of one circuit merge into one subscriber (its id
//! the Circuit ID, its name the Circuit Name), each device's IPv4 and IPv6 cells (several
//! addresses or prefixes, comma-separated inside quotes) become its prefixes, and its plan is
//! a configured column or the circuit's maximum rates. Columns are found by their header name,
//! so the layouts of every LibreQoS release (with or without `Parent Node ID`, `Anchor Node
//! ID`, `sqm`) read alike. Every bad row is reported with its line, column and reason.

use std::{borrow::Cow, collections::HashMap, path::Path};

use ipnet::IpNet;

use super::table::{
    Subscriber, Table, TableError, TableErrors, check_token, parse_prefix, records,
};

/// Where a circuit's plan comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PlanFrom {
    /// The circuit's maximum rates, download then upload, in Mbps: `155M-20M`.
    #[default]
    MaxRates,
    /// The cell of this column (`plan_column = "Comment"`), a plan name as quid's own table has.
    Column(String),
}

/// The columns quid reads: every LibreQoS layout has them.
const CIRCUIT_ID: &str = "Circuit ID";
const CIRCUIT_NAME: &str = "Circuit Name";
const IPV4: &str = "IPv4";
const IPV6: &str = "IPv6";
const DOWN_MAX: &str = "Download Max Mbps";
const UP_MAX: &str = "Upload Max Mbps";

/// The columns of LibreQoS's layout; a header without one of them is not a `ShapedDevices.csv`.
const REQUIRED: [&str; 13] = [
    CIRCUIT_ID,
    CIRCUIT_NAME,
    "Device ID",
    "Device Name",
    "Parent Node",
    "MAC",
    IPV4,
    IPV6,
    "Download Min Mbps",
    "Upload Min Mbps",
    DOWN_MAX,
    UP_MAX,
    "Comment",
];

/// Where the columns quid reads are in this file.
struct Columns {
    /// Fields a row has (the header's).
    width: usize,
    circuit: usize,
    name: usize,
    ipv4: usize,
    ipv6: usize,
    down_max: usize,
    up_max: usize,
    /// The plan column and its name as the header spells it.
    plan: Option<(usize, String)>,
}

impl Columns {
    /// Finds the columns by name (case and surrounding spaces ignored).
    fn find(header: &csv::StringRecord, plan: &PlanFrom) -> Result<Columns, String> {
        // A spreadsheet's export may start with a byte order mark.
        let names: Vec<&str> = header
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == 0 {
                    n.trim_start_matches('\u{feff}')
                } else {
                    n
                }
            })
            .collect();
        let index = |want: &str| {
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(want.trim()))
        };
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|c| index(c).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "not a LibreQoS ShapedDevices.csv header: it lacks {}; the first row must name \
                 LibreQoS's columns ({}), found `{}`",
                missing.join(", "),
                REQUIRED.join(","),
                names.join(",")
            ));
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].iter().any(|o| o.eq_ignore_ascii_case(n)) {
                return Err(format!("the column `{n}` is named twice"));
            }
        }
        let plan = match plan {
            PlanFrom::MaxRates => None,
            PlanFrom::Column(c) => match index(c) {
                Some(i) => Some((i, names[i].to_owned())),
                None => {
                    return Err(format!(
                        "plan_column `{c}` is not a column of this file; its columns are `{}`",
                        names.join(",")
                    ));
                }
            },
        };
        let at = |c: &str| index(c).unwrap_or(usize::MAX);
        Ok(Columns {
            width: names.len(),
            circuit: at(CIRCUIT_ID),
            name: at(CIRCUIT_NAME),
            ipv4: at(IPV4),
            ipv6: at(IPV6),
            down_max: at(DOWN_MAX),
            up_max: at(UP_MAX),
            plan,
        })
    }
}

/// One circuit as merged so far.
struct Circuit {
    /// Line of its first device row.
    line: u64,
    subscriber: Subscriber,
}

/// Parses and checks `ShapedDevices.csv` bytes; `path` only names the file in errors.
pub fn parse(bytes: &[u8], path: &Path, plan_from: &PlanFrom) -> Result<Table, TableErrors> {
    let mut errors = Vec::new();
    let error_at = |line: u64, field: Cow<'static, str>, message: String| TableError {
        path: path.to_owned(),
        line,
        field,
        message,
    };
    let mut columns: Option<Columns> = None;
    let mut circuits: Vec<Circuit> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut owners: HashMap<IpNet, (u64, String)> = HashMap::new();
    for record in records(bytes, path) {
        let Ok((line, record)) = record.map_err(|e| errors.push(e)) else {
            continue;
        };
        let Some(cols) = &columns else {
            match Columns::find(&record, plan_from) {
                Ok(c) => columns = Some(c),
                Err(m) => {
                    // Without the header we cannot trust the column order: stop here.
                    errors.push(error_at(line, "header".into(), m));
                    break;
                }
            }
            continue;
        };
        if record.len() != cols.width {
            errors.push(error_at(
                line,
                "row".into(),
                format!(
                    "expected {} fields as the header has, found {}; a cell holding a comma \
                     (several addresses, a comment) must be quoted",
                    cols.width,
                    record.len()
                ),
            ));
            continue;
        }
        let mut bad: Vec<(Cow<'static, str>, String)> = Vec::new();
        let id = &record[cols.circuit];
        if let Err(m) = check_token(id, 64) {
            bad.push((CIRCUIT_ID.into(), m));
        }
        let name = &record[cols.name];
        if name.chars().count() > 128 || name.chars().any(char::is_control) {
            bad.push((
                CIRCUIT_NAME.into(),
                "must be at most 128 printable characters".into(),
            ));
        }
        let plan = match &cols.plan {
            Some((i, column)) => {
                let plan = &record[*i];
                check_token(plan, 64)
                    .map(|()| plan.to_owned())
                    .map_err(|m| {
                        let m = format!("{m} (the plan is read from this column: plan_column)");
                        bad.push((column.clone().into(), m));
                    })
                    .ok()
            }
            None => {
                let down = mbps(&record[cols.down_max]).map_err(|m| bad.push((DOWN_MAX.into(), m)));
                let up = mbps(&record[cols.up_max]).map_err(|m| bad.push((UP_MAX.into(), m)));
                match (down, up) {
                    (Ok(d), Ok(u)) => Some(format!("{d}M-{u}M")),
                    _ => None,
                }
            }
        };
        let mut nets = Vec::new();
        for (column, v4, cell) in [
            (IPV4, true, &record[cols.ipv4]),
            (IPV6, false, &record[cols.ipv6]),
        ] {
            for text in cell
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
            {
                let net = match parse_prefix(text) {
                    Err(m) => {
                        bad.push((column.into(), m));
                        continue;
                    }
                    Ok(net) if matches!(net, IpNet::V4(_)) != v4 => {
                        let family = if v4 { "IPv4" } else { "IPv6" };
                        bad.push((
                            column.into(),
                            format!("`{text}` is not an {family} address or prefix"),
                        ));
                        continue;
                    }
                    Ok(net) => net,
                };
                match owners.get(&net) {
                    Some((l, owner)) if owner != id => bad.push((
                        column.into(),
                        format!("{net} is already owned by circuit `{owner}` (line {l})"),
                    )),
                    Some((l, _)) => bad.push((
                        column.into(),
                        format!("{net} is already listed for this circuit on line {l}"),
                    )),
                    None if nets.contains(&net) => {
                        bad.push((column.into(), format!("{net} is listed twice")))
                    }
                    None => nets.push(net),
                }
            }
        }
        if let (Some(plan), Some(&i)) = (&plan, by_id.get(id)) {
            let first = &circuits[i];
            if first.subscriber.name != name {
                bad.push((
                    CIRCUIT_NAME.into(),
                    format!(
                        "circuit `{id}` is named `{}` on line {}; every device row of a circuit \
                         must carry the same name",
                        first.subscriber.name.escape_debug(),
                        first.line
                    ),
                ));
            }
            if first.subscriber.plan != *plan {
                let column: Cow<'static, str> = match &cols.plan {
                    Some((_, c)) => c.clone().into(),
                    None => DOWN_MAX.into(),
                };
                bad.push((
                    column,
                    format!(
                        "circuit `{id}` has plan `{}` on line {} but `{plan}` here; every device \
                         row of a circuit must carry the same plan",
                        first.subscriber.plan, first.line
                    ),
                ));
            }
        }
        let Some(plan) = plan.filter(|_| bad.is_empty()) else {
            errors.extend(bad.into_iter().map(|(f, m)| error_at(line, f, m)));
            continue;
        };
        for net in &nets {
            owners.insert(*net, (line, id.to_owned()));
        }
        match by_id.get(id) {
            Some(&i) => circuits[i].subscriber.prefixes.extend(nets),
            None => {
                by_id.insert(id.to_owned(), circuits.len());
                circuits.push(Circuit {
                    line,
                    subscriber: Subscriber {
                        id: id.to_owned(),
                        name: name.to_owned(),
                        plan,
                        prefixes: nets,
                    },
                });
            }
        }
    }
    if columns.is_none() && errors.is_empty() {
        errors.push(error_at(
            1,
            "header".into(),
            format!(
                "the table is empty: it needs LibreQoS's header `{}`",
                REQUIRED.join(",")
            ),
        ));
    }
    for c in &circuits {
        if c.subscriber.prefixes.is_empty() {
            errors.push(error_at(
                c.line,
                IPV4.into(),
                format!(
                    "circuit `{}` has no IPv4 or IPv6 address on any of its device rows; quid \
                     could count nothing for it",
                    c.subscriber.id
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(Table {
            subscribers: circuits.into_iter().map(|c| c.subscriber).collect(),
        })
    } else {
        errors.sort_by_key(|e| e.line);
        Err(TableErrors(errors))
    }
}

/// A rate in Mbps as LibreQoS writes it (`155`, `2.5`, `1.0`), normalized for a plan name
/// (`1.0` and `1` are one plan): digits, at most one '.', above 0.
fn mbps(text: &str) -> Result<String, String> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || text.ends_with('.') || text.len() > 12 {
        return Err(format!(
            "`{}` is not a rate in Mbps (a number such as 100 or 2.5)",
            text.escape_debug()
        ));
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let shown = match (int.is_empty(), frac.is_empty()) {
        (true, true) => {
            return Err(format!(
                "`{text}` Mbps: a circuit's maximum rate must be above 0"
            ));
        }
        (_, true) => int.to_owned(),
        (true, false) => format!("0.{frac}"),
        (false, false) => format!("{int}.{frac}"),
    };
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LibreQoS's current layout (its `ShapedDevices.example.csv`: comment lines, the `sqm`
    /// column, quoted lists of addresses, one circuit with two devices), in shared and
    /// documentation addresses.
    const SHAPED: &str = "\
# LibreQoS Shaped Devices Configuration Example
#
Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,MAC,IPv4,IPv6,Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment,sqm
1,\"968 Circle St., Gurnee, IL 60031\",1,Device 1,AP_A,,\"100.64.0.1, 100.64.0.14\",2001:db8:0:100::/56,1,1,155,20,home-155,
2,\"31 Marconi Street\",2,Device 2,AP_A,,100.64.0.2,2001:db8:0:200::/56,0.5,0.5,2.5,1.0,home-small,fq_codel
2794,\"6 Littleton Drive, Ringgold, GA 30736\",5,Device 5,AP_11,,100.64.0.5,2001:db8:0:500::/56,1,1,105,18,home-105,
2794,\"6 Littleton Drive, Ringgold, GA 30736\",6,Device 6,AP_11,aa:bb:cc:dd:ee:06,\"100.64.0.6,198.51.100.0/29\",\"2001:db8:0:600::/56, 2001:db8:0:601::/64\",1,1,105,18,home-105,cake/fq_codel
";

    fn parse_with(text: &str, plan: &PlanFrom) -> Result<Table, Vec<String>> {
        parse(text.as_bytes(), Path::new("ShapedDevices.csv"), plan)
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    fn summary(t: &Table) -> Vec<String> {
        t.subscribers
            .iter()
            .map(|s| {
                let p: Vec<String> = s.prefixes.iter().map(|p| p.to_string()).collect();
                format!("{}|{}|{}|{}", s.id, s.name, s.plan, p.join(" "))
            })
            .collect()
    }

    #[test]
    fn circuits_become_subscribers_with_every_device_address_and_the_rates_as_plan() {
        let t = parse_with(SHAPED, &PlanFrom::MaxRates).unwrap();
        assert_eq!(
            summary(&t),
            [
                "1|968 Circle St., Gurnee, IL 60031|155M-20M|100.64.0.1/32 100.64.0.14/32 2001:db8:0:100::/56",
                "2|31 Marconi Street|2.5M-1M|100.64.0.2/32 2001:db8:0:200::/56",
                "2794|6 Littleton Drive, Ringgold, GA 30736|105M-18M|100.64.0.5/32 \
                 2001:db8:0:500::/56 100.64.0.6/32 198.51.100.0/29 2001:db8:0:600::/56 \
                 2001:db8:0:601::/64",
            ]
        );
    }

    #[test]
    fn the_plan_can_come_from_a_named_column() {
        let t = parse_with(SHAPED, &PlanFrom::Column("comment".into())).unwrap();
        let plans: Vec<&str> = t.subscribers.iter().map(|s| s.plan.as_str()).collect();
        assert_eq!(plans, ["home-155", "home-small", "home-105"]);
    }

    #[test]
    fn an_older_layout_with_node_id_columns_reads_by_column_name() {
        let t = parse_with(
            "Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,Parent Node ID,Anchor Node ID,MAC,IPv4,IPv6,Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment\n\
             radius-known-circuit,Radius Known Circuit,dev-1,Known,PPPoE Access,lab-pppoe,lab-core,pppoe-known,192.0.2.7,,6,3,60,20,fixture\n",
            &PlanFrom::MaxRates,
        )
        .unwrap();
        assert_eq!(
            summary(&t),
            ["radius-known-circuit|Radius Known Circuit|60M-20M|192.0.2.7/32"]
        );
    }

    #[test]
    fn every_bad_row_is_refused_with_its_line_column_and_reason() {
        let head = "Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,MAC,IPv4,IPv6,Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment\n";
        let rows = "\
a,A,1,d,AP,,100.64.0.1,,1,1,100,20,x
b,B,2,d,AP,,100.64.0.1,,1,1,100,20,x
c c,C,3,d,AP,,100.64.0.3,,1,1,100,20,x
d,D,4,d,AP,,100.64.0.9/29,,1,1,100,20,x
e,E,5,d,AP,,2001:db8::1,,1,1,100,20,x
f,F,6,d,AP,,,192.0.2.1,1,1,100,20,x
g,G,7,d,AP,,100.64.0.7,,1,1,fast,0,x
h,H,8,d,AP,,100.64.0.8,,1,1,100,20,Down=cake, Up=fq_codel
a,A,9,d,AP,,100.64.0.10,,1,1,200,20,x
a,Other name,10,d,AP,,100.64.0.11,,1,1,100,20,x
a,A,11,d,AP,,100.64.0.1,,1,1,100,20,x
i,I,12,d,AP,,,,1,1,100,20,x
";
        let errs = parse_with(&format!("{head}{rows}"), &PlanFrom::MaxRates).unwrap_err();
        assert_eq!(
            errs,
            [
                "ShapedDevices.csv:3: IPv4: 100.64.0.1/32 is already owned by circuit `a` (line 2)",
                "ShapedDevices.csv:4: Circuit ID: `c c` contains ' '; use letters, digits, '.', '_' or '-'",
                "ShapedDevices.csv:5: IPv4: `100.64.0.9/29` has host bits set; did you mean 100.64.0.8/29?",
                "ShapedDevices.csv:6: IPv4: `2001:db8::1` is not an IPv4 address or prefix",
                "ShapedDevices.csv:7: IPv6: `192.0.2.1` is not an IPv6 address or prefix",
                "ShapedDevices.csv:8: Download Max Mbps: `fast` is not a rate in Mbps (a number such as 100 or 2.5)",
                "ShapedDevices.csv:8: Upload Max Mbps: `0` Mbps: a circuit's maximum rate must be above 0",
                "ShapedDevices.csv:9: row: expected 13 fields as the header has, found 14; a cell holding a comma (several addresses, a comment) must be quoted",
                "ShapedDevices.csv:10: Download Max Mbps: circuit `a` has plan `100M-20M` on line 2 but `200M-20M` here; every device row of a circuit must carry the same plan",
                "ShapedDevices.csv:11: Circuit Name: circuit `a` is named `A` on line 2; every device row of a circuit must carry the same name",
                "ShapedDevices.csv:12: IPv4: 100.64.0.1/32 is already listed for this circuit on line 2",
                "ShapedDevices.csv:13: IPv4: circuit `i` has no IPv4 or IPv6 address on any of its device rows; quid could count nothing for it",
            ]
        );
        let errs = parse_with(
            &format!("{head}a,A,1,d,AP,,100.64.0.1,,1,1,100,20,Standard plan\n"),
            &PlanFrom::Column("Comment".into()),
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "ShapedDevices.csv:2: Comment: `Standard plan` contains ' '; use letters, digits, \
              '.', '_' or '-' (the plan is read from this column: plan_column)"
            ]
        );
    }

    #[test]
    fn a_file_that_is_not_in_libreqos_layout_is_refused_at_its_header() {
        let errs = parse_with(
            "id,name,plan,prefixes\nalice,A,home,100.64.0.1\n",
            &PlanFrom::MaxRates,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with(
                "ShapedDevices.csv:1: header: not a LibreQoS ShapedDevices.csv header: it lacks \
                 Circuit ID, Circuit Name, Device ID,"
            ),
            "{errs:?}"
        );
        let errs = parse_with(SHAPED, &PlanFrom::Column("Plan".into())).unwrap_err();
        assert!(
            errs[0].starts_with(
                "ShapedDevices.csv:3: header: plan_column `Plan` is not a column of this file"
            ),
            "{errs:?}"
        );
        let errs = parse_with("# nothing\n", &PlanFrom::MaxRates).unwrap_err();
        assert!(errs[0].contains("the table is empty"), "{errs:?}");
    }

    #[test]
    fn rates_are_normalized_so_one_plan_has_one_name() {
        assert_eq!(mbps("100").unwrap(), "100");
        assert_eq!(mbps("100.0").unwrap(), "100");
        assert_eq!(mbps("0.50").unwrap(), "0.5");
        assert_eq!(mbps("007").unwrap(), "7");
        for bad in [
            "",
            ".5",
            "5.",
            "1e3",
            "-1",
            "0.0",
            "1.2.3",
            "99999999999999",
        ] {
            assert!(mbps(bad).is_err(), "{bad}");
        }
    }
}
