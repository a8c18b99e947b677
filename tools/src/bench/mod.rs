//! The benchmark runner behind `tools/bench`: a table of suites, each returning a markdown section
//! and a JSON value, merged into `BENCHMARKS.md` and `bench-results/bench.json`.
//!
//! Suites that need separate processes re-execute the bench binary with a hidden role (see
//! [`ROLES`]); a role talks to its parent over stdin/stdout with one line per message.
//!
//! To add a suite: write `fn run(&Context) -> anyhow::Result<SuiteReport>` in a module here and
//! add it to [`SUITES`] (and its child roles, if any, to [`ROLES`]).

pub mod bus;
pub mod child;
pub mod forward;
pub mod idle;
pub mod lab;
pub mod labctl;
pub mod ping;
pub mod tcp;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

/// A suite: its name on the command line, a one-line description and the function running it.
pub struct Suite {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&Context) -> anyhow::Result<SuiteReport>,
}

/// Every suite, in the order a bare `tools/bench` runs them.
pub const SUITES: &[Suite] = &[
    Suite {
        name: "bus",
        about: "shmif bus frames/s and Gbit/s, separate writer and reader processes, vs memcpy",
        run: bus::run,
    },
    Suite {
        name: "ping",
        about: "netstack ping RTT, IPv4 and IPv6, and flood-ping transactions/s (one bus, one router) vs Linux veth; idle node RSS",
        run: ping::run,
    },
    Suite {
        name: "forward",
        about: "frames/s a netstack router forwards bus to bus (64 B, 1500 B) vs the kernel between veth pairs",
        run: forward::run,
    },
    Suite {
        name: "tcp",
        about:
            "TCP throughput (iperf3) between Linux nodes on buses via tap bridges, vs Linux veth",
        run: tcp::run,
    },
    Suite {
        name: "labctl",
        about: "labctl up to checks passing, node RSS and down, for 10/100/1000-node labs",
        run: labctl::run,
    },
    Suite {
        name: "idle",
        about: "CPU time and context switches of 100 idle nodes over 10 s; idle node RssAnon and VmRSS",
        run: idle::run,
    },
];

/// Hidden subcommands the runner re-executes itself with: `bench __ROLE ARGS...`.
pub type Role = fn(Vec<String>) -> anyhow::Result<()>;
pub const ROLES: &[(&str, Role)] = &[
    ("__bus-writer", bus::writer_role),
    ("__bus-reader", bus::reader_role),
    ("__bus-row", bus::row_role),
    ("__fwd-gen", forward::gen_role),
    ("__fwd-sink", forward::sink_role),
    ("__udp-gen", forward::udp_gen_role),
];

/// What a suite gets to work with.
pub struct Context {
    /// How long one measured run of a row lasts.
    pub row_time: Duration,
    /// Runs per row; tables show the median run. The machines are shared, so single runs can be
    /// far off when another user's job takes a core.
    pub repeats: usize,
    /// The bench binary itself, to re-execute in child roles.
    pub exe: PathBuf,
}

impl Context {
    /// `quick` rows are for a smoke run: short, and noisier.
    pub fn new(quick: bool) -> anyhow::Result<Context> {
        Ok(Context {
            row_time: Duration::from_millis(if quick { 300 } else { 1000 }),
            repeats: if quick { 1 } else { 3 },
            exe: std::env::current_exe().context("locating the bench binary")?,
        })
    }

    /// Builds `packages`' binaries from the current source (release, or debug for a debug
    /// bench) into the target directory the bench binary came from, and returns the paths of
    /// `bins` there, so the numbers are for this source.
    pub fn build_bins<const N: usize>(
        &self,
        packages: &[&str],
        bins: [&str; N],
    ) -> anyhow::Result<[PathBuf; N]> {
        let dir = self
            .exe
            .parent()
            .context("the bench binary has no directory")?
            .to_path_buf();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("no workspace root")?
            .join("Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--bins", "--manifest-path"]);
        build.arg(&manifest);
        for p in packages {
            build.args(["-p", p]);
        }
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let what = format!("cargo build -p {}", packages.join(" -p "));
        let status = build.status().with_context(|| format!("running {what}"))?;
        if !status.success() {
            anyhow::bail!("{what} failed ({status})");
        }
        let paths = bins.map(|b| dir.join(b));
        if let Some(missing) = paths.iter().find(|p| !p.exists()) {
            anyhow::bail!(
                "built {}, but it is not beside the bench binary in {}; \
                 run tools/bench with the same CARGO_TARGET_DIR as cargo",
                missing.display(),
                dir.display()
            );
        }
        Ok(paths)
    }
}

/// One suite's results.
pub struct SuiteReport {
    pub name: &'static str,
    /// Markdown body (tables and notes) without the section heading.
    pub markdown: String,
    /// Raw numbers for the JSON file.
    pub json: Value,
}

/// Where and on what the numbers were taken.
pub struct RunInfo {
    pub command: String,
    pub date: String,
    pub nproc: String,
    pub kernel: String,
    pub cpu: String,
    pub loadavg: String,
    /// Load average once the suites are done, filled in by the caller.
    pub loadavg_end: String,
}

impl RunInfo {
    pub fn collect(command: String) -> RunInfo {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        RunInfo {
            command,
            date: shell(&["date", "-u", "+%Y-%m-%d %H:%M:%S UTC"]),
            nproc: shell(&["nproc"]),
            kernel: shell(&["uname", "-r"]),
            cpu,
            loadavg: loadavg(),
            loadavg_end: String::new(),
        }
    }

    fn markdown(&self) -> String {
        format!(
            "Command: `{}`  \nMachine: {} CPUs (`nproc`), {}, Linux {} (`uname -r`), \
             load average {} at start and {} at the end  \nDate: {}\n",
            self.command,
            self.nproc,
            self.cpu,
            self.kernel,
            self.loadavg,
            self.loadavg_end,
            self.date
        )
    }

    fn json(&self) -> Value {
        json!({
            "command": self.command,
            "date": self.date,
            "nproc": self.nproc,
            "kernel": self.kernel,
            "cpu": self.cpu,
            "loadavg": self.loadavg,
            "loadavg_end": self.loadavg_end,
        })
    }
}

/// Other people share these machines: the load average says how quiet a run was.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn shell(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

const MD_TITLE: &str = "# shmlab benchmarks\n\n\
Written by `tools/bench` (see the README); each section says the command that produced it. \
Rerun a suite to refresh its section; the others are kept.\n";

fn begin_marker(suite: &str) -> String {
    format!("<!-- suite:{suite} -->")
}

fn end_marker(suite: &str) -> String {
    format!("<!-- /suite:{suite} -->")
}

/// Replaces (or appends) the section of `report` in an existing BENCHMARKS.md text.
pub fn merge_markdown(existing: &str, report: &SuiteReport, info: &RunInfo) -> String {
    let section = format!(
        "{}\n## {}\n\n{}\n{}{}\n",
        begin_marker(report.name),
        report.name,
        info.markdown(),
        report.markdown,
        end_marker(report.name)
    );
    let (begin, end) = (begin_marker(report.name), end_marker(report.name));
    match (existing.find(&begin), existing.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            let tail = &existing[e + end.len()..];
            let tail = tail.strip_prefix('\n').unwrap_or(tail);
            format!("{}{section}{tail}", &existing[..b])
        }
        _ if existing.trim().is_empty() => format!("{MD_TITLE}\n{section}"),
        _ => format!("{}\n{section}", existing.trim_end()),
    }
}

/// Replaces (or adds) the suite's entry in an existing bench.json value.
pub fn merge_json(existing: Option<Value>, report: &SuiteReport, info: &RunInfo) -> Value {
    let mut root = existing
        .filter(|v| v.get("suites").is_some_and(Value::is_object))
        .unwrap_or_else(|| json!({ "suites": {} }));
    root["suites"][report.name] = json!({ "run": info.json(), "results": report.json });
    root
}

/// Writes each report into the markdown and JSON files, keeping other suites' sections.
pub fn write_outputs(
    reports: &[SuiteReport],
    info: &RunInfo,
    markdown: &Path,
    json_path: &Path,
) -> anyhow::Result<()> {
    let mut md = std::fs::read_to_string(markdown).unwrap_or_default();
    let mut js: Option<Value> = std::fs::read(json_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    for r in reports {
        md = merge_markdown(&md, r, info);
        js = Some(merge_json(js, r, info));
    }
    for p in [markdown, json_path] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    std::fs::write(markdown, md).with_context(|| format!("writing {}", markdown.display()))?;
    let text = serde_json::to_string_pretty(&js.unwrap_or(Value::Null))? + "\n";
    std::fs::write(json_path, text).with_context(|| format!("writing {}", json_path.display()))?;
    Ok(())
}

/// Formats a rate with an SI prefix: 12.3 M, 456 k.
pub fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0} ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            command: "tools/bench x".into(),
            date: "d".into(),
            nproc: "2".into(),
            kernel: "k".into(),
            cpu: "c".into(),
            loadavg: "0".into(),
            loadavg_end: "0".into(),
        }
    }

    fn report(name: &'static str, body: &str) -> SuiteReport {
        SuiteReport {
            name,
            markdown: body.into(),
            json: json!(body),
        }
    }

    #[test]
    fn rerunning_a_suite_replaces_only_its_section() {
        let md = merge_markdown("", &report("bus", "old bus\n"), &info());
        let md = merge_markdown(&md, &report("ping", "ping\n"), &info());
        let md = merge_markdown(&md, &report("bus", "new bus\n"), &info());
        assert!(md.starts_with("# shmlab benchmarks"));
        assert!(md.contains("new bus") && !md.contains("old bus"));
        assert!(
            md.find("new bus").unwrap() < md.find("ping\n").unwrap(),
            "order kept"
        );
        assert_eq!(md.matches("<!-- suite:bus -->").count(), 1);

        let js = merge_json(None, &report("bus", "a"), &info());
        let js = merge_json(Some(js), &report("ping", "b"), &info());
        let js = merge_json(Some(js), &report("bus", "c"), &info());
        assert_eq!(js["suites"]["bus"]["results"], json!("c"));
        assert_eq!(js["suites"]["ping"]["results"], json!("b"));
    }
}
