//! `completion` and the hidden `man`: shell completions and man pages from the same definition
//! as `--help`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::Cli;
use crate::version;

/// The command line as completions offer it: without the hidden subcommands (`man`, which only
/// the packaging runs), which clap_complete would offer like any other.
fn completable() -> clap::Command {
    let full = Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|subcommand| !subcommand.is_hide_set())
        .cloned()
        .collect();
    clap::Command::new(env!("CARGO_PKG_NAME"))
        .version(version::LONG_VERSION)
        .args(full.get_arguments().cloned())
        .subcommands(visible)
        .args_conflicts_with_subcommands(true)
}

/// Completions from the same definition as `--help`; a failed write is an error, not a panic.
pub(super) fn completion(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut completable(),
        env!("CARGO_PKG_NAME"),
        &mut script,
    );
    std::io::stdout()
        .write_all(&script)
        .context("cannot write the completion script")
}

/// The man pages, from the same definition as `--help`: the main page on standard output, or
/// it and one page per subcommand written to `out_dir` (the Debian package ships those).
pub(super) fn man_pages(out_dir: Option<&Path>) -> anyhow::Result<()> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let source = format!("{} {}", env!("CARGO_PKG_NAME"), version::VERSION);
    let Some(dir) = out_dir else {
        return clap_mangen::Man::new(command)
            .source(source)
            .render(&mut std::io::stdout())
            .context("cannot write the man page");
    };
    let subcommands: Vec<clap::Command> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    for page in std::iter::once(command).chain(subcommands) {
        let man = clap_mangen::Man::new(page).source(source.clone());
        let file = dir.join(man.get_filename());
        man.generate_to(dir)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}
