//! `quid statement`: sign a subscriber's statement for a month, or `verify` one against the
//! ISP's published operator key (what a subscriber runs).

use std::path::Path;

use anyhow::{Context as _, bail};
use quid::{
    config::Config, ledger::chain::credits, ledger::statement, settlement::node_client,
    settlement::report::quote, store::Store,
};

/// `quid statement verify FILE`: checks the signature and arithmetic, against `operator_key`
/// unless `unauthenticated`.
pub fn verify(
    file: &Path,
    operator_key: Option<&str>,
    unauthenticated: bool,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let key = match operator_key {
        Some(k) => Some(operator_public_key(k)?),
        None if unauthenticated => None,
        // A statement names its own key: checking it against itself proves nothing
        // about who signed it, so that is never the silent default.
        None => bail!(
            "{}: whose signature this is cannot be checked without the ISP's published \
             operator key: give --operator-key KEY (64 hex digits, or the file the ISP \
             published), or --unauthenticated to check only the arithmetic and that it is \
             signed by the key it names",
            file.display()
        ),
    };
    let v = statement::verify(&text, key.as_ref())?;
    let s = &v.statement;
    if v.authenticated {
        println!(
            "statement ok: {} {}, closing balance {} credits; signature, operator key {} \
             and arithmetic verified",
            s.subscriber,
            s.period,
            credits(s.closing_balance),
            v.signer
        );
    } else {
        println!(
            "statement consistent: {} {}, closing balance {} credits; arithmetic and \
             signature verified for the key it names, {}\nNOT verified: that this key is \
             the ISP's. Anyone can make such a statement; check it with --operator-key",
            s.subscriber,
            s.period,
            credits(s.closing_balance),
            v.signer
        );
    }
    Ok(())
}

/// `quid statement SUBSCRIBER --period YYYY-MM --key KEY`: prints the signed statement.
pub fn issue(config: &Config, subscriber: &str, period: &str, key: &Path) -> anyhow::Result<()> {
    let store = Store::open(&config.daemon.state_dir)?;
    super::known::require_subscriber(config, &store, subscriber, || {
        Ok(!store.entries(Some(subscriber))?.is_empty())
    })?;
    let key = node_client::read_key(key)?;
    let signed = statement::sign(store.statement(subscriber, period)?, &key);
    println!("{}", serde_json::to_string_pretty(&signed)?);
    Ok(())
}

/// `quid statement verify NEWER --against OLDER --operator-key KEY`: both statements verified
/// against the operator key, then that the ledger NEWER was computed from extends, unchanged,
/// the one OLDER was computed from.
pub fn verify_against(
    newer: &Path,
    older: &Path,
    operator_key: Option<&str>,
) -> anyhow::Result<()> {
    let Some(key) = operator_key else {
        bail!(
            "--against needs --operator-key: only the ISP's key makes the comparison mean anything"
        );
    };
    let key = operator_public_key(key)?;
    let read = |file: &Path| -> anyhow::Result<statement::Verified> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        statement::verify(&text, Some(&key)).with_context(|| file.display().to_string())
    };
    let (n, o) = (read(newer)?, read(older)?);
    let c = statement::check_against(&n, &o)?;
    println!(
        "statements ok: {} {} and {} {} verified with operator key {}; the ledger of {} extends, \
         unchanged, the ledger {} was computed from (entries 1..={} hash the same in both)",
        n.statement.subscriber,
        c.newer_period,
        o.statement.subscriber,
        c.older_period,
        n.signer,
        c.newer_period,
        c.older_period,
        c.older_seq.unwrap_or(0)
    );
    Ok(())
}

/// The operator public key given as 64 hex digits or as a file holding them.
pub(crate) fn operator_public_key(arg: &str) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let trimmed = arg.trim();
    if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(statement::parse_key(trimmed)?);
    }
    let text = std::fs::read_to_string(arg).with_context(|| {
        format!(
            "--operator-key {}: neither 64 hex digits nor a readable key file",
            quote(arg)
        )
    })?;
    statement::parse_key(&text).with_context(|| format!("in {arg}"))
}
