//! Manual pages and shell completions generated from the clap definitions, so they never
//! disagree with `--help`: `quid completions SHELL` prints one, and the hidden `quid
//! generate-docs --out DIR` writes them all for `cargo xtask dist` to package.

use std::path::Path;

use anyhow::Context as _;
use clap_complete::Shell;

/// The shells whose completions the package ships, with the file name each loads from its
/// Debian completion directory.
pub const PACKAGED_SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Prints the completion script for `shell` to stdout.
pub fn completions(mut cmd: clap::Command, shell: Shell) {
    clap_complete::generate(shell, &mut cmd, "quid", &mut std::io::stdout());
}

/// Writes `DIR/man/quid.1` and one page per visible subcommand (`quid-ledger-show.1`, ...),
/// and `DIR/completions/` with the bash (`quid.bash`), zsh (`_quid`) and fish (`quid.fish`)
/// scripts.
pub fn generate(mut cmd: clap::Command, out: &Path) -> anyhow::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {}: is --out writable?", dir.display()))?;
    }
    clap_mangen::generate_to(cmd.clone(), &man)
        .with_context(|| format!("cannot write the manual pages into {}", man.display()))?;
    for shell in PACKAGED_SHELLS {
        clap_complete::generate_to(shell, &mut cmd, "quid", &completions).with_context(|| {
            format!(
                "cannot write the {shell} completions into {}",
                completions.display()
            )
        })?;
    }
    Ok(())
}
