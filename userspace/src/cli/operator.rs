//! `quid operator key|token`: the operator's statement-signing public key, and new operator
//! API tokens.

use std::path::Path;

use anyhow::anyhow;
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

/// `quid operator token`: writes a new token to `out`.
pub fn token(out: &Path) -> anyhow::Result<()> {
    let token = quid::http::operator::new_token()
        .map_err(|e| anyhow!("no randomness for the token: {e}"))?;
    // 0640: the daemon's group reads it (chgrp quid), nobody else.
    write_secret(out, 0o640, &token)?;
    println!(
        "wrote a new operator token to {}; set operator.token_file to it",
        out.display()
    );
    Ok(())
}
