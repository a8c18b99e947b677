//! `bench [SUITE...] [--quick] [--out DIR]`: runs benchmark suites and writes BENCHMARKS.md and
//! bench-results/bench.json. Run it through `tools/bench`, which builds it in release mode.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Parser;
use shmlab_tools::bench::{self, Context, RunInfo, ROLES, SUITES};

/// Run shmlab benchmarks and record the results.
#[derive(Parser, Debug)]
#[command(name = "tools/bench", bin_name = "tools/bench", after_help = suites_help())]
struct Args {
    /// Suites to run (default: all).
    #[arg(value_name = "SUITE")]
    suites: Vec<String>,
    /// Short rows: a smoke run, noisier numbers. Results go to bench-results/ only, so the
    /// committed BENCHMARKS.md always comes from a full run.
    #[arg(long)]
    quick: bool,
    /// Write BENCHMARKS.md and bench.json into DIR instead of the repository root and
    /// bench-results/.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn suites_help() -> String {
    let mut s = String::from("Suites:\n");
    for suite in SUITES {
        s.push_str(&format!("  {:<8} {}\n", suite.name, suite.about));
    }
    s
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // A child re-executed in a role: `bench __ROLE ARGS...`.
    if let Some((name, role)) = argv
        .get(1)
        .and_then(|a| ROLES.iter().find(|(name, _)| name == a))
    {
        return match role(argv[1..].to_vec()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench {name}: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(Args::parse(), &argv[1..]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args, raw: &[String]) -> anyhow::Result<()> {
    let chosen: Vec<&bench::Suite> = if args.suites.is_empty() {
        SUITES.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for name in &args.suites {
            match SUITES.iter().find(|s| s.name == name) {
                Some(s) => chosen.push(s),
                None => {
                    let known: Vec<&str> = SUITES.iter().map(|s| s.name).collect();
                    bail!("unknown suite {name:?} (known: {})", known.join(", "));
                }
            }
        }
        chosen
    };
    // Release builds only: debug numbers would be meaningless, and tools/bench builds release.
    if cfg!(debug_assertions) {
        eprintln!("bench: warning: this is a debug build; run tools/bench for real numbers");
    }
    let ctx = Context::new(args.quick)?;
    let mut info = RunInfo::collect(format!("tools/bench {}", raw.join(" ")).trim().to_string());
    let (markdown, json) = match &args.out {
        Some(dir) => (dir.join("BENCHMARKS.md"), dir.join("bench.json")),
        None => {
            // The workspace root, one level above this package.
            let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            let root = manifest.parent().unwrap_or(manifest);
            if args.quick {
                (
                    root.join("bench-results/BENCHMARKS.quick.md"),
                    root.join("bench-results/bench.quick.json"),
                )
            } else {
                (
                    root.join("BENCHMARKS.md"),
                    root.join("bench-results/bench.json"),
                )
            }
        }
    };
    let mut reports = Vec::new();
    for suite in chosen {
        eprintln!("bench: running {}", suite.name);
        reports.push((suite.run)(&ctx).with_context(|| format!("suite {}", suite.name))?);
    }
    info.loadavg_end = bench::loadavg();
    bench::write_outputs(&reports, &info, &markdown, &json)?;
    eprintln!("bench: wrote {} and {}", markdown.display(), json.display());
    Ok(())
}
