//! `quid ledger checkpoint` and `quid ledger checkpoints`: sign the ledger's head now, and
//! export the signed checkpoints to keep off the router.

use std::{io::Write as _, path::Path};

use anyhow::Context as _;
use ed25519_dalek::VerifyingKey;
use quid::{
    clock::Clock, config::Config, settlement::node_client, settlement::report::rfc3339,
    store::Store,
};

/// The operator public key checkpoints must be signed with: `arg` (64 hex digits or a file),
/// else the public half of `[settlement] operator_key`, else none (said where it matters).
pub fn public_key(config: &Config, arg: Option<&str>) -> anyhow::Result<Option<VerifyingKey>> {
    if let Some(arg) = arg {
        return super::statement::operator_public_key(arg).map(Some);
    }
    match &config.settlement.operator_key {
        Some(path) => Ok(Some(node_client::read_key(path)?.verifying_key())),
        None => Ok(None),
    }
}

/// `quid ledger checkpoint`: signs the ledger's head now with the configured operator key.
pub fn checkpoint(config: &Config) -> anyhow::Result<()> {
    let Some(path) = &config.settlement.operator_key else {
        anyhow::bail!(
            "no [settlement] operator_key in the config: checkpoints are signed with the key \
             statements are signed with; set it (`quid operator key` prints its public half)"
        );
    };
    let key = node_client::read_key(path)?;
    let store = Store::open(&config.daemon.state_dir)?;
    let signed = store.write_checkpoint(&key, Clock::system().now_i64()?, None)?;
    let c = &signed.checkpoint;
    println!(
        "checkpoint {} signed: ledger entry {} ({}) at {}",
        c.number,
        c.ledger_seq,
        c.head,
        rfc3339(c.at)
    );
    Ok(())
}

/// `quid ledger checkpoints [--export FILE]`: the signed checkpoints as JSON lines.
pub fn export(config: &Config, file: Option<&Path>) -> anyhow::Result<()> {
    let store = Store::open(&config.daemon.state_dir)?;
    let mut text = String::new();
    for c in store.checkpoints()? {
        text.push_str(&serde_json::to_string(&c)?);
        text.push('\n');
    }
    match file {
        Some(file) => {
            // Written whole, then renamed: a copy is never half a file.
            let tmp = file.with_extension("partial");
            std::fs::write(&tmp, &text)
                .and_then(|()| std::fs::rename(&tmp, file))
                .with_context(|| format!("cannot write {}", file.display()))?;
            eprintln!(
                "{} checkpoints written to {}",
                text.lines().count(),
                file.display()
            );
        }
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(())
}
