//! The `labctl` command line.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use labctl::{graph, topology};

/// shmlab controller: bring up declarative network labs, run commands in their nodes, test them.
#[derive(Parser, Debug)]
#[command(name = "labctl", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check a topology file and report every problem with file:line:column
    Validate {
        /// Topology file (TOML)
        file: PathBuf,
    },
    /// Draw a topology as Graphviz DOT or Mermaid
    Graph {
        /// Topology file (TOML)
        file: PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: graph::Format,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("labctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(file: &std::path::Path) -> Result<topology::Topology> {
    let (topo, _) = topology::load(file)?;
    Ok(topo)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Validate { file } => {
            let topo = load(&file)?;
            println!(
                "{}: lab \"{}\" is valid: {} nodes, {} buses, {} checks",
                file.display(),
                topo.name.value,
                topo.nodes.len(),
                topo.buses.len(),
                topo.checks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Graph { file, format } => {
            let topo = load(&file)?;
            print!("{}", graph::render(&topo, format));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "labctl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}
