//! The nodes file: CSV with a header `node,subscriber,public_key,cpu_cores,storage_bytes,max_watts`,
//! one node a row. A node is a subscriber's device that supplies compute, storage and
//! electricity to the grid; its declared capacity bounds what a report may claim. Every bad row
//! is reported with its line and field, like the subscriber table.

use std::{collections::HashMap, path::Path};

use ed25519_dalek::VerifyingKey;

use crate::subscribers::table::{TableError, TableErrors};

/// One registered node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// The subscriber whose metered traffic the node's reports are matched against.
    pub subscriber: String,
    pub key: VerifyingKey,
    pub cpu_cores: u32,
    pub storage_bytes: u64,
    pub max_watts: u32,
}

/// Every node by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nodes {
    pub by_id: HashMap<String, Node>,
}

const HEADER: [&str; 6] = [
    "node",
    "subscriber",
    "public_key",
    "cpu_cores",
    "storage_bytes",
    "max_watts",
];

impl FromIterator<Node> for Nodes {
    fn from_iter<I: IntoIterator<Item = Node>>(nodes: I) -> Nodes {
        let mut all = Nodes::default();
        for node in nodes {
            all.insert(node);
        }
        all
    }
}

impl Nodes {
    /// Registers `node` under its id (replacing one with the same id).
    pub fn insert(&mut self, node: Node) {
        self.by_id.insert(node.id.clone(), node);
    }

    /// Reads and checks a nodes file.
    pub fn load(path: &Path) -> Result<Nodes, TableErrors> {
        Nodes::parse(
            &crate::subscribers::table::read_file(path, "the nodes file")?,
            path,
        )
    }

    /// Parses and checks nodes file bytes; `path` only names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Nodes, TableErrors> {
        let mut errors = Vec::new();
        let err = |line, field: &'static str, message| TableError::new(path, line, field, message);
        let mut nodes = Nodes::default();
        let mut header = false;
        for record in crate::subscribers::table::records(bytes, path) {
            let Ok((line, record)) = record.map_err(|e| errors.push(e)) else {
                continue;
            };
            if !header {
                header = true;
                if record.iter().map(str::to_ascii_lowercase).ne(HEADER) {
                    errors.push(err(
                        line,
                        "header",
                        format!("the first row must be `{}`", HEADER.join(",")),
                    ));
                    break;
                }
                continue;
            }
            if record.len() != HEADER.len() {
                errors.push(err(
                    line,
                    "row",
                    format!("expected 6 fields, found {}", record.len()),
                ));
                continue;
            }
            let before = errors.len();
            let id = &record[0];
            if id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                errors.push(err(
                    line,
                    "node",
                    format!("`{id}`: use 1 to 64 letters, digits, '.', '_' or '-'"),
                ));
            } else if nodes.by_id.contains_key(id) {
                errors.push(err(line, "node", format!("node `{id}` is listed twice")));
            }
            // The same rule as the table's ids: a subscriber with a space could never match.
            if let Err(m) = crate::subscribers::table::check_token(&record[1], 64) {
                errors.push(err(line, "subscriber", m));
            }
            let key = hex::decode(&record[2])
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .and_then(|b| VerifyingKey::from_bytes(&b).ok());
            if key.is_none() {
                errors.push(err(
                    line,
                    "public_key",
                    "must be an ed25519 public key as 64 hex digits (`quid node keygen` prints one)"
                        .into(),
                ));
            }
            let number = |i: usize, field: &'static str, errors: &mut Vec<TableError>| {
                record[i].parse::<u64>().map_err(|_| {
                    errors.push(err(
                        line,
                        field,
                        format!("`{}` is not a whole number", &record[i]),
                    ))
                })
            };
            let cores = number(3, "cpu_cores", &mut errors);
            let storage = number(4, "storage_bytes", &mut errors);
            let watts = number(5, "max_watts", &mut errors);
            if errors.len() > before {
                continue;
            }
            let (Some(key), Ok(cores), Ok(storage), Ok(watts)) = (key, cores, storage, watts)
            else {
                continue;
            };
            nodes.insert(Node {
                id: id.to_owned(),
                subscriber: record[1].to_owned(),
                key,
                cpu_cores: u32::try_from(cores).unwrap_or(u32::MAX),
                storage_bytes: storage,
                max_watts: u32::try_from(watts).unwrap_or(u32::MAX),
            });
        }
        if errors.is_empty() {
            Ok(nodes)
        } else {
            Err(TableErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";

    #[test]
    fn nodes_parse_and_every_bad_row_is_reported() {
        let text = format!(
            "node,subscriber,public_key,cpu_cores,storage_bytes,max_watts\n\
             pi-1,alice,{KEY},4,1000000000000,15\n\
             pi-1,alice,{KEY},4,1,15\n\
             pi-2,,abcd,four,1,15\n\
             pi-3,al ice,{KEY},4,1,15\n"
        );
        let errs: Vec<String> = Nodes::parse(text.as_bytes(), Path::new("nodes.csv"))
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errs,
            [
                "nodes.csv:3: node: node `pi-1` is listed twice",
                "nodes.csv:4: subscriber: must not be empty",
                "nodes.csv:4: public_key: must be an ed25519 public key as 64 hex digits (`quid node keygen` prints one)",
                "nodes.csv:4: cpu_cores: `four` is not a whole number",
                "nodes.csv:5: subscriber: `al ice` contains ' '; use letters, digits, '.', '_' or '-'",
            ]
        );
        let good = format!(
            "node,subscriber,public_key,cpu_cores,storage_bytes,max_watts\npi-1,alice,{KEY},4,1000,15\n"
        );
        let nodes = Nodes::parse(good.as_bytes(), Path::new("nodes.csv")).unwrap();
        assert_eq!(nodes.by_id["pi-1"].storage_bytes, 1000);
    }
}
