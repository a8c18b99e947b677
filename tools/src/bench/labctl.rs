//! The `labctl` suite: how long `labctl` takes to bring up N-node labs (N = 10, 100, 1000) until
//! their checks pass, how much memory the nodes use, and how long `labctl down` takes.
//!
//! Each lab is a generated topology file run through the release `labctl` binary exactly as a
//! user would: `labctl test FILE --keep` (validate, create buses, start and configure every node,
//! run the `[[checks]]`), then the nodes' VmRSS is summed from /proc, then `labctl down`. The
//! check is one end-to-end ping between the two hosts, the farthest-apart nodes of the lab.
//!
//! Layouts: N = 10 and 100 are chains (a host at each end, N-2 routers in a line, static routes
//! both ways). A ping's TTL (64 by default) would die on the 100-chain, so the hosts set
//! `net.inet.ip.ttl = 255`. That still cannot cross 998 routers, so N = 1000 is a star of chains:
//! ten arms of about 100 routers meeting on one core bus, a host at the end of two arms; the
//! ping crosses both arms (about 200 routers).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::{Context, SuiteReport};

/// Lab sizes, in nodes.
const SIZES: &[usize] = &[10, 100, 1000];
/// Arms of the star layout used for the largest lab.
const STAR_ARMS: usize = 10;
/// Targets from the labctl issue (seconds until the lab is up and checked).
fn target(n: usize) -> Option<f64> {
    match n {
        100 => Some(2.0),
        1000 => Some(20.0),
        _ => None,
    }
}

/// A generated lab: its topology text and what it looks like.
struct Lab {
    name: String,
    nodes: usize,
    layout: String,
    /// Routers the end-to-end ping crosses.
    hops: usize,
    toml: String,
}

/// Writes one router or host: its interfaces (bus, address) and routes (to, via).
fn node(out: &mut String, name: &str, ifs: &[(String, String)], routes: &[(&str, String)]) {
    let _ = writeln!(out, "[nodes.{name}]");
    if name.starts_with('r') || name.starts_with('a') {
        let _ = writeln!(out, "forwarding = true");
    } else {
        let _ = writeln!(out, "sysctl = {{ \"net.inet.ip.ttl\" = 255 }}");
    }
    let ifs: Vec<String> = ifs
        .iter()
        .map(|(bus, addr)| format!("{{ bus = \"{bus}\", addrs = [\"{addr}\"] }}"))
        .collect();
    let _ = writeln!(out, "interfaces = [{}]", ifs.join(", "));
    if !routes.is_empty() {
        let routes: Vec<String> = routes
            .iter()
            .map(|(to, via)| format!("{{ to = \"{to}\", via = \"{via}\" }}"))
            .collect();
        let _ = writeln!(out, "routes = [{}]", routes.join(", "));
    }
}

/// The /24 of inner link `m` (1-based, between routers `m` and `m + 1`) of arm `arm`, without
/// its last octet: each arm has its own second octet, the link number is the third.
fn link_net(arm: usize, m: usize) -> String {
    format!("10.{}.{}", 100 + arm, m)
}

/// A line of `routers` routers, arm number `arm`. Router 1 is at the head (the core bus, or h1's
/// bus in a plain chain): `head_if` is its head-side interface, `head_routes` its routes over
/// it. `tail_host` (subnet without last octet, host name) puts a host beyond the last router.
/// `toward_tail` is the host subnet routed away from the head, if any.
struct Arm<'a> {
    arm: usize,
    routers: usize,
    head_if: (String, String),
    head_routes: Vec<(&'a str, String)>,
    toward_tail: Option<&'a str>,
    tail_host: Option<(&'a str, &'a str)>,
}

fn arm_name(arm: usize, j: usize) -> String {
    if arm == 0 {
        format!("r{j}")
    } else {
        format!("a{arm}r{j}")
    }
}

fn write_arm(out: &mut String, a: &Arm<'_>, toward_head: &[&str]) {
    for j in 1..=a.routers {
        let mut ifs = Vec::new();
        let mut routes: Vec<(&str, String)> = Vec::new();
        if j == 1 {
            ifs.push(a.head_if.clone());
            routes.extend(a.head_routes.iter().cloned());
        } else {
            let net = link_net(a.arm, j - 1);
            ifs.push((format!("x{}l{}", a.arm, j - 1), format!("{net}.2/24")));
            for to in toward_head {
                routes.push((to, format!("{net}.1")));
            }
        }
        if j < a.routers {
            let net = link_net(a.arm, j);
            ifs.push((format!("x{}l{j}", a.arm), format!("{net}.1/24")));
            if let Some(to) = a.toward_tail {
                routes.push((to, format!("{net}.2")));
            }
        } else if let Some((net, _)) = a.tail_host {
            ifs.push((format!("x{}tail", a.arm), format!("{net}.1/24")));
        }
        node(out, &arm_name(a.arm, j), &ifs, &routes);
    }
    if let Some((net, host)) = a.tail_host {
        node(
            out,
            host,
            &[(format!("x{}tail", a.arm), format!("{net}.2/24"))],
            &[("default", format!("{net}.1"))],
        );
    }
}

const H1_NET: &str = "10.1.0.0/24";
const H2_NET: &str = "10.2.0.0/24";

/// h1 -- r1 -- ... -- r(n-2) -- h2, each link its own bus.
fn chain(n: usize) -> Lab {
    let routers = n - 2;
    let name = format!("chain-{n}");
    let mut t = format!("name = \"{name}\"\n");
    node(
        &mut t,
        "h1",
        &[("x0head".into(), "10.1.0.2/24".into())],
        &[("default", "10.1.0.1".into())],
    );
    write_arm(
        &mut t,
        &Arm {
            arm: 0,
            routers,
            head_if: ("x0head".into(), "10.1.0.1/24".into()),
            head_routes: vec![],
            toward_tail: Some(H2_NET),
            tail_host: Some(("10.2.0", "h2")),
        },
        &[H1_NET],
    );
    push_check(&mut t);
    Lab {
        name,
        nodes: n,
        layout: format!("chain of {routers} routers"),
        hops: routers,
        toml: t,
    }
}

/// `STAR_ARMS` chains of routers whose heads share the core bus (10.0.0.0/24); h1 at the end of
/// arm 1, h2 at the end of the last arm. Heads route the hosts' subnets over the core; every
/// other router routes them toward the core or, on the hosts' arms, toward the tail.
fn star(n: usize) -> Lab {
    let routers = n - 2;
    let name = format!("star-{n}");
    let mut t = format!("name = \"{name}\"\n[buses.core]\n");
    let lengths: Vec<usize> = (0..STAR_ARMS)
        .map(|i| routers / STAR_ARMS + usize::from(i < routers % STAR_ARMS))
        .collect();
    let core = |arm: usize| format!("10.0.0.{arm}");
    let last = STAR_ARMS;
    for (i, &len) in lengths.iter().enumerate() {
        let arm = i + 1;
        let (tail_host, own) = match arm {
            1 => (Some(("10.1.0", "h1")), Some(H1_NET)),
            a if a == last => (Some(("10.2.0", "h2")), Some(H2_NET)),
            _ => (None, None),
        };
        // A host's own arm routes it toward the tail (`toward_tail`); the rest over the core.
        let head_routes: Vec<(&str, String)> = [(H1_NET, 1), (H2_NET, last)]
            .into_iter()
            .filter(|(net, _)| Some(*net) != own)
            .map(|(net, arm_of)| (net, core(arm_of)))
            .collect();
        let toward_head: Vec<&str> = [H1_NET, H2_NET]
            .into_iter()
            .filter(|n| Some(*n) != own)
            .collect();
        write_arm(
            &mut t,
            &Arm {
                arm,
                routers: len,
                head_if: ("core".into(), format!("{}/24", core(arm))),
                head_routes,
                toward_tail: own,
                tail_host,
            },
            &toward_head,
        );
    }
    push_check(&mut t);
    Lab {
        name,
        nodes: n,
        layout: format!(
            "star: {STAR_ARMS} arms of {}-{} routers on a core bus, hosts at the ends of two arms",
            lengths.iter().min().unwrap_or(&0),
            lengths.iter().max().unwrap_or(&0)
        ),
        hops: lengths[0] + lengths[last - 1],
        toml: t,
    }
}

fn push_check(t: &mut String) {
    t.push_str("[[checks]]\nname = \"end to end\"\nping = { from = \"h1\", to = \"10.2.0.2\" }\n");
}

fn lab_for(n: usize) -> Lab {
    // The ping must fit in a TTL of 255 with room to spare.
    if n <= 200 {
        chain(n)
    } else {
        star(n)
    }
}

/// The release (or, for a debug bench, debug) `labctl` and `netstack`, built now so the numbers
/// are for the current source, in the target directory the bench binary came from.
fn bins(ctx: &Context) -> anyhow::Result<(PathBuf, PathBuf)> {
    let [labctl, node] = ctx.build_bins(&["labctl", "netstack"], ["labctl", "netstack"])?;
    Ok((labctl, node))
}

/// A private lab base directory (`$SHMLAB_DIR`) on tmpfs; whatever is left in it is brought
/// down and removed when dropped.
struct Base {
    dir: PathBuf,
    labctl: PathBuf,
    netstack: PathBuf,
}

impl Base {
    fn new(labctl: PathBuf, netstack: PathBuf) -> anyhow::Result<Base> {
        let root = [Path::new("/dev/shm").to_path_buf(), std::env::temp_dir()]
            .into_iter()
            .find(|p| p.is_dir())
            .context("no /dev/shm or temporary directory")?;
        let dir = root.join(format!("shmlab-bench-labctl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Base {
            dir,
            labctl,
            netstack,
        })
    }

    fn labctl(&self, args: &[&str]) -> anyhow::Result<(Duration, String)> {
        let started = Instant::now();
        let out = Command::new(&self.labctl)
            .args(args)
            .env("SHMLAB_DIR", &self.dir)
            .env("SHMLAB_NETSTACK", &self.netstack)
            .stdin(std::process::Stdio::null())
            .output()
            .context("running labctl")?;
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "labctl {} failed ({}):\n{stdout}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((took, stdout))
    }
}

impl Drop for Base {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if e.path().join("state.json").is_file() {
                let name = e.file_name().to_string_lossy().into_owned();
                let _ = self.labctl(&["down", &name]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One measured bring-up.
#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    /// `labctl test --keep` wall time: from the command's start until every check passed.
    up_and_checked_s: f64,
    /// Bring-up alone as `labctl test` reports it ("N nodes up in X s").
    up_s: f64,
    /// Sum of the nodes' VmRSS, KiB.
    rss_kib: u64,
    /// Sum of the nodes' RssShmem (bus pages they touched, counted in each node), KiB.
    rss_shmem_kib: u64,
    down_s: f64,
}

fn status_kib(pid: u64, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn measure(base: &Base, lab: &Lab, file: &Path) -> anyhow::Result<Sample> {
    let (took, out) = base
        .labctl(&["test", file.to_str().context("path")?, "--keep"])
        .with_context(|| format!("bringing up {}", lab.name))?;
    if !out.contains("1 passed, 0 failed") {
        bail!("{}: the check did not pass:\n{out}", lab.name);
    }
    let up_s = out
        .split(" nodes up in ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|x| x.parse::<f64>().ok())
        .context("labctl test did not say how long up took")?;
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(base.dir.join(&lab.name).join("state.json"))
            .context("reading state.json")?,
    )?;
    let pids: Vec<u64> = state["nodes"]
        .as_array()
        .context("state.json has no nodes")?
        .iter()
        .filter_map(|n| n["pid"].as_u64())
        .collect();
    if pids.len() != lab.nodes {
        bail!(
            "{}: {} node pids for {} nodes",
            lab.name,
            pids.len(),
            lab.nodes
        );
    }
    let mut rss_kib = 0;
    let mut rss_shmem_kib = 0;
    for &p in &pids {
        rss_kib += status_kib(p, "VmRSS:").with_context(|| format!("node pid {p} is gone"))?;
        rss_shmem_kib += status_kib(p, "RssShmem:").unwrap_or(0);
    }
    // The ping really crossed the whole path: every router on it took one off the reply's TTL.
    let (_, ping) = base.labctl(&["exec", &lab.name, "h1", "--", "ping", "-c", "1", "10.2.0.2"])?;
    let want = format!("ttl={}", 255 - lab.hops);
    if !ping.contains(&format!("{want} ")) {
        bail!("{}: expected a reply with {want}:\n{ping}", lab.name);
    }
    let (down, _) = base.labctl(&["down", &lab.name])?;
    Ok(Sample {
        up_and_checked_s: took.as_secs_f64(),
        up_s,
        rss_kib,
        rss_shmem_kib,
        down_s: down.as_secs_f64(),
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(ctx: &Context) -> anyhow::Result<SuiteReport> {
    let (labctl, netstack) = bins(ctx)?;
    let base = Base::new(labctl, netstack)?;
    let mut rows = Vec::new();
    let mut js = Vec::new();
    for &n in SIZES {
        let lab = lab_for(n);
        let file = base.dir.join(format!("{}.toml", lab.name));
        std::fs::write(&file, &lab.toml).with_context(|| format!("writing {}", file.display()))?;
        base.labctl(&["validate", file.to_str().context("path")?])
            .with_context(|| format!("the generated {} does not validate", lab.name))?;
        let mut samples = Vec::new();
        for i in 0..ctx.repeats {
            eprintln!("bench: labctl: {} run {}/{}", lab.name, i + 1, ctx.repeats);
            samples.push(measure(&base, &lab, &file)?);
        }
        let med = |f: fn(&Sample) -> f64| median(&mut samples.iter().map(f).collect::<Vec<_>>());
        let checked = med(|s| s.up_and_checked_s);
        let (lo, hi) = samples
            .iter()
            .map(|s| s.up_and_checked_s)
            .fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let spread = if samples.len() > 1 {
            format!("{lo:.2}–{hi:.2}")
        } else {
            "–".into()
        };
        let up = med(|s| s.up_s);
        let down = med(|s| s.down_s);
        let rss = med(|s| s.rss_kib as f64);
        let shmem = med(|s| s.rss_shmem_kib as f64);
        let verdict = match target(n) {
            Some(t) if checked < t => format!("< {t} s: yes"),
            Some(t) => format!("< {t} s: **no**"),
            None => "-".into(),
        };
        rows.push(format!(
            "| {n} | {} | {} | {up:.2} | {checked:.2} | {spread} | {:.1} | {:.0} | {:.1} | {down:.2} | {verdict} |",
            lab.layout,
            lab.hops,
            rss / 1024.0,
            rss / n as f64,
            shmem / 1024.0,
        ));
        js.push(json!({
            "nodes": n,
            "layout": lab.layout,
            "routers_on_path": lab.hops,
            "samples": samples,
            "median": {
                "up_s": up,
                "up_and_checked_s": checked,
                "rss_kib": rss,
                "rss_shmem_kib": shmem,
                "down_s": down,
            },
            "target_s": target(n),
        }));
    }
    let mut md = format!(
        "`labctl test FILE --keep` on generated labs (release build), then `labctl down`; \
         median of {} run(s) (*spread*: fastest–slowest). *Up* is labctl's own bring-up time (buses, nodes started, every \
         node configured over its control socket); *up + check* is the whole command's wall \
         time until the lab's one check, a ping from h1 to h2 (the two ends), passed. *RSS* sums \
         the nodes' VmRSS from /proc; *shmem* is the bus pages in it (a bus is a shared file \
         mapping, so a page counts once in every node that touched it). Buses have the default \
         size, {} MiB. Hosts set `net.inet.ip.ttl = 255` so the ping survives the long paths; \
         after each run a second ping checks that the reply's TTL is 255 minus the routers on \
         the path. Targets (labctl issue): 100 nodes in under 2 s, 1000 in under 20 s, judged on \
         *up + check*.\n\n",
        ctx.repeats,
        shmif::format::DEFAULT_BUS_SIZE / (1024 * 1024)
    );
    md += "| Nodes | Layout | Routers on the ping's path | Up (s) | Up + check (s) | spread (s) | RSS total (MiB) \
           | RSS per node (KiB) | of which shmem (MiB) | Down (s) | Target |\n";
    md += "|---:|:---|---:|---:|---:|:---:|---:|---:|---:|---:|:---|\n";
    for r in rows {
        md += &r;
        md.push('\n');
    }
    Ok(SuiteReport {
        name: "labctl",
        markdown: md,
        json: json!({ "labs": js }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_labs_have_n_nodes_and_the_path_they_claim() {
        for n in [4, 10, 100] {
            let lab = chain(n);
            assert_eq!(lab.toml.matches("[nodes.").count(), n);
            assert_eq!(lab.hops, n - 2);
        }
        let lab = star(1000);
        assert_eq!(lab.toml.matches("[nodes.").count(), 1000);
        assert!(lab.hops < 250, "{}", lab.hops);
        assert_eq!(lab.toml.matches("[[checks]]").count(), 1);
    }
}
