//! `quid balance` and `quid ledger show|adjust|verify`: the ledger as the operator reads and
//! corrects it, printed as fixed-width tables.

use anyhow::{Context as _, bail};
use quid::{
    clock::Clock,
    config::Config,
    ledger::{
        chain::{self, NewEntry},
        checkpoint,
    },
    settlement::report::rfc3339,
    store::Store,
};

use super::human::credits;

/// One line of `quid balance --json`: integer micro-credits; `balance` and
/// `balance_after_pending` are null where the stored balance is not an exact integer.
#[derive(serde::Serialize)]
struct BalanceJson<'a> {
    subscriber: &'a str,
    balance: Option<i64>,
    pending_debit: i64,
    balance_after_pending: Option<i128>,
}

/// `quid balance`: one subscriber's balance, or everyone's, with the usage debit pending until
/// the period settles and the balance after it (the columns: id, balance, pending debit,
/// balance after pending, in credits with thousands separators), or with `json` `{"balances": [BalanceJson...]}`; fails naming any
/// out of range.
pub fn balance(config: &Config, subscriber: Option<String>, json: bool) -> anyhow::Result<()> {
    let store = Store::open(&config.daemon.state_dir)?;
    // The balances table: the balance the metrics and the operator API read too.
    let balances = store.balances_checked()?;
    let pending = store.pending_debits()?;
    let chosen: Vec<(&str, Option<i64>)> = match &subscriber {
        Some(id) => {
            super::known::require_subscriber(config, &store, id, || {
                Ok(balances.contains_key(id) || !store.entries(Some(id))?.is_empty())
            })?;
            vec![(id, balances.get(id).copied().unwrap_or(Some(0)))]
        }
        None => balances.iter().map(|(id, b)| (id.as_str(), *b)).collect(),
    };
    // A row that is not an exact integer (only an edited store has one) is named, never
    // wrapped. i128: the sum of two i64 amounts never wraps.
    let lines: Vec<BalanceJson> = chosen
        .iter()
        .map(|&(id, b)| {
            let p = pending.get(id).copied().unwrap_or(0);
            BalanceJson {
                subscriber: id,
                balance: b,
                pending_debit: p,
                balance_after_pending: b.map(|b| i128::from(b) + i128::from(p)),
            }
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "balances": &lines }))?
        );
    } else {
        let unreadable = || "unreadable".to_owned();
        for l in &lines {
            println!(
                "{:<24} {:>18} {:>18} {:>18}",
                l.subscriber,
                l.balance
                    .map_or_else(unreadable, |b| credits(i128::from(b))),
                credits(i128::from(l.pending_debit)),
                l.balance_after_pending.map_or_else(unreadable, credits)
            );
        }
    }
    let broken = lines.iter().filter(|l| l.balance.is_none()).count();
    if broken > 0 {
        bail!(
            "{broken} balance(s) are not exact integers: the store was edited outside quid \
             (`quid ledger verify` names what differs)"
        );
    }
    Ok(())
}

/// One entry of `quid ledger show --json`: the stored entry (amounts in integer
/// micro-credits, `at` in unix seconds) with the running balance after it.
#[derive(serde::Serialize)]
struct EntryJson {
    #[serde(flatten)]
    entry: chain::Entry,
    balance: i128,
}

/// `quid ledger show`: a subscriber's entries, oldest first, with the running balance, or with
/// `json` `{"subscriber": ID, "entries": [EntryJson...]}`.
pub fn show(config: &Config, subscriber: &str, json: bool) -> anyhow::Result<()> {
    let store = Store::open(&config.daemon.state_dir)?;
    let entries = store.entries(Some(subscriber))?;
    super::known::require_subscriber(config, &store, subscriber, || Ok(!entries.is_empty()))?;
    // i128: a running sum of i64 amounts that never wraps.
    let mut balance = 0i128;
    let lines: Vec<EntryJson> = entries
        .into_iter()
        .map(|entry| {
            balance += i128::from(entry.amount);
            EntryJson { entry, balance }
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "subscriber": subscriber, "entries": &lines })
            )?
        );
        return Ok(());
    }
    for EntryJson { entry: e, balance } in &lines {
        println!(
            "{:>8} {} {:<20} {:>16} {:>16}  {}",
            e.seq,
            rfc3339(e.at),
            e.kind,
            chain::credits(e.amount),
            chain::credits_wide(*balance),
            e.reference
        );
    }
    Ok(())
}

/// `quid ledger adjust`: records an operator adjustment with its reason.
pub fn adjust(
    config: &Config,
    subscriber: String,
    amount: i64,
    reason: String,
) -> anyhow::Result<()> {
    if reason.trim().is_empty() {
        bail!("an adjustment needs a --reason: the ledger keeps it for both sides");
    }
    if amount == 0 {
        bail!("--amount 0 changes nothing; give micro-credits, negative to debit");
    }
    let mut store = Store::open(&config.daemon.state_dir)?;
    // An adjustment to a mistyped id would open a ledger account nobody owns.
    super::known::require_subscriber(config, &store, &subscriber, || {
        Ok(!store.entries(Some(&subscriber))?.is_empty())
    })?;
    store.append(&[NewEntry::adjustment(
        &subscriber,
        Clock::system().now_i64()?,
        amount,
        reason,
    )])?;
    println!(
        "adjusted {subscriber} by {} credits",
        chain::credits(amount)
    );
    Ok(())
}

/// `quid ledger verify`: recomputes the hash chain as it streams from the store, checks it
/// against the signed checkpoints (stored, and exported ones from `checkpoints`), and every
/// balance against it.
pub fn verify(
    config: &Config,
    checkpoints: Option<&std::path::Path>,
    operator_key: Option<&str>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let store = Store::open(&config.daemon.state_dir)?;
    let opened = started.elapsed().as_secs_f64();
    let key = super::checkpoints::public_key(config, operator_key)?;
    let stored = store.checkpoints()?;
    checkpoint::verify_chain(&stored, key.as_ref()).context("the stored checkpoints")?;
    let mut all = stored.clone();
    let exported = match checkpoints {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let exported =
                checkpoint::parse_lines(&text).with_context(|| file.display().to_string())?;
            checkpoint::verify_chain(&exported, key.as_ref())
                .with_context(|| file.display().to_string())?;
            all.extend(exported.iter().cloned());
            Some(exported.len())
        }
        None => None,
    };
    let heads = checkpoint::Heads::of(&all);
    let streamed = std::time::Instant::now();
    let books = store.verify_ledger(&heads)??;
    let streamed = streamed.elapsed().as_secs_f64();
    let b = chain::verify_sums(&books.sums, &books.balances)?;
    let n = books.entries;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ledger ok: {n} entries, hash chain intact; {b} balances, each the sum of its entries"
    );
    match stored.last() {
        Some(last) => println!(
            "checkpoints ok: {} stored{}, signed by {}{}; the newest signed entry {} at {}",
            stored.len(),
            exported.map_or(String::new(), |e| format!(" and {e} exported")),
            last.operator_key,
            if key.is_some() {
                " (the operator key)"
            } else {
                " (NOT checked against the operator key: give --operator-key)"
            },
            last.checkpoint.ledger_seq,
            rfc3339(last.checkpoint.at),
        ),
        None => println!(
            "no checkpoints{}: a truncated or consistently rewritten ledger cannot be told from \
             an intact one; sign one with `quid ledger checkpoint` (the daemon does with \
             [settlement] operator_key)",
            exported.map_or(String::new(), |e| format!(" stored ({e} exported checked)"))
        ),
    }
    let per_entry = if n > 0 {
        secs * 1e6 / f64::from(u32::try_from(n).unwrap_or(u32::MAX))
    } else {
        0.0
    };
    eprintln!(
        "checked in {secs:.3} s ({per_entry:.3} µs per entry; opening with the integrity \
         check {opened:.3} s, the chain and balance rows {streamed:.3} s)"
    );
    Ok(())
}
