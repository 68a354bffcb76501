//! `quid operator key|token`: the operator's statement-signing public key, and new operator
//! API tokens.

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use quid::settlement::node_client;

use super::secret_file::write_secret;

/// `quid operator key`: prints the public key (and with `out`, writes it to a new file).
pub fn key(key: &Path, out: Option<&Path>) -> anyhow::Result<()> {
    let key = node_client::read_key(key)?;
    let public = hex::encode(key.verifying_key().to_bytes());
    if let Some(out) = out {
        write_secret(out, 0o644, &public)?;
        eprintln!(
            "wrote the operator public key to {}; publish it for subscribers",
            out.display()
        );
    }
    println!("{public}");
    Ok(())
}

/// The daemon's user: `quid operator token` gives its group read access to the token.
pub const DAEMON_USER: &str = "quid";

/// `quid operator token`: writes a new token to `out`, mode 0640, group `group` (default: the
/// primary group of the daemon user `quid`), so the daemon can read it and nobody else.
pub fn token(out: &Path, group: Option<&str>) -> anyhow::Result<()> {
    use nix::unistd::{Group, User};
    // Resolved before the file exists, so a wrong name leaves nothing behind.
    let gid = match group {
        Some(name) => Some(
            Group::from_name(name)
                .with_context(|| format!("cannot look up group `{name}`"))?
                .with_context(|| {
                    format!("no group `{name}` on this host (getent group lists them)")
                })?
                .gid,
        ),
        None => User::from_name(DAEMON_USER)
            .with_context(|| format!("cannot look up user `{DAEMON_USER}`"))?
            .map(|u| u.gid),
    };
    let token = quid::http::operator::new_token()
        .map_err(|e| anyhow!("no randomness for the token: {e}"))?;
    let file = write_secret(out, 0o640, &token)?;
    match gid {
        Some(gid) => {
            if let Err(e) = nix::unistd::fchown(&file, None, Some(gid)) {
                drop(file);
                // A token nobody may read is worse than none: take it back.
                let _ = std::fs::remove_file(out);
                bail!(
                    "cannot give {} to group {gid} ({e}): run this as root, or as a member \
                     of that group",
                    out.display()
                );
            }
        }
        None => eprintln!(
            "quid: no user `{DAEMON_USER}` on this host (the package creates it): {} keeps your \
             group; `chgrp` it to the daemon's group, or give --group",
            out.display()
        ),
    }
    println!(
        "wrote a new operator token to {}; set operator.token_file to it",
        out.display()
    );
    Ok(())
}
