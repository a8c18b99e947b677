//! `rump_server [-s] [-v] [-c ncpu] [-d drivespec] [-l library]... [-m module] [-r ram] URL`:
//! starts a netstack node serving the Unix socket of URL and returns once it listens, printing
//! nothing, like NetBSD's `rump_server` (usr.bin/rump_server/rump_allserver.c).
//! `rump_allserver` is the same with every component loaded.
//!
//! The node is the `netstack` binary (`$SHMLAB_NETSTACK`, else beside this executable, else on
//! `PATH`), started in this directory, so relative socket and bus paths mean what they mean
//! here. Options:
//! - `-l` loads a component (`rumpnet_netinet`, `librumpnet_netinet.so`, a path to it);
//!   unknown ones and missing dependencies stop the start with NetBSD's "failed to load
//!   -libraries" message. What is loaded goes into the node's environment, where the `rump.*`
//!   commands find it and refuse what the server lacks ([`super::components`]).
//! - `-s` stays in the foreground (the node process replaces this one); `-v` sends the node's
//!   log to stderr (NetBSD: the kernel's boot messages).
//! - `-c` and `-r` are checked and handed to the node as `RUMP_NCPU` / `RUMP_MEMLIMIT`, as
//!   NetBSD does; they change nothing in a netstack node (one stack thread, memory as needed).
//! - `-d` (host files as block devices) and `-m` (kernel modules) are checked and refused:
//!   netstack nodes have no file systems and load no modules.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use super::components::{self, Loaded, ENV};
use super::url;

/// What the command line asked for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Opts {
    foreground: bool,
    verbose: bool,
    ncpu: Option<String>,
    ram: Option<String>,
    drives: Vec<String>,
    libs: Vec<String>,
    modules: Vec<String>,
    url: String,
}

/// A start that failed before a node ran: lines for stderr (NetBSD's words), status 1.
struct Fail(Vec<String>);

fn fail(line: impl Into<String>) -> Fail {
    Fail(vec![line.into()])
}

fn usage(prog: &str) -> String {
    format!("usage: {prog} [-s] [-c ncpu] [-d drivespec] [-l libs] [-m modules] bindurl")
}

/// NetBSD's `getopt(argc, argv, "c:d:l:m:r:sv")` and one operand.
fn parse(prog: &str, args: &[String]) -> Result<Opts, Fail> {
    let mut o = Opts::default();
    let mut i = 0;
    while i < args.len() {
        let word = &args[i];
        if word == "--" {
            i += 1;
            break;
        }
        if word.len() < 2 || !word.starts_with('-') {
            break;
        }
        i += 1;
        for (at, opt) in word[1..].char_indices() {
            let rest = &word[1 + at + opt.len_utf8()..];
            match opt {
                's' => o.foreground = true,
                'v' => o.verbose = true,
                'c' | 'd' | 'l' | 'm' | 'r' => {
                    let value = if !rest.is_empty() {
                        rest.to_string()
                    } else if let Some(v) = args.get(i) {
                        i += 1;
                        v.clone()
                    } else {
                        return Err(Fail(vec![
                            format!("{prog}: option requires an argument -- {opt}"),
                            usage(prog),
                        ]));
                    };
                    match opt {
                        'c' => o.ncpu = Some(value),
                        'd' => {
                            check_drivespec(&value).map_err(|e| Fail(vec![e, usage(prog)]))?;
                            o.drives.push(value);
                        }
                        'l' => o.libs.push(value),
                        'm' => o.modules.push(value),
                        _ => o.ram = Some(value),
                    }
                    break;
                }
                other => {
                    return Err(Fail(vec![
                        format!("{prog}: unknown option -- {other}"),
                        usage(prog),
                    ]))
                }
            }
        }
    }
    match &args[i..] {
        [url] => {
            o.url = url.clone();
            Ok(o)
        }
        _ => Err(fail(usage(prog))),
    }
}

/// The drivespec syntax NetBSD's `-d` takes: `key=K,hostpath=P[,size=N|host][,offset=N]
/// [,disklabel=X][,type=blk|chr|reg]`, with its complaints.
fn check_drivespec(spec: &str) -> Result<(), String> {
    let (mut key, mut hostpath, mut sized, mut typ) = (false, false, false, None);
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        match name {
            "key" if key => return Err("key already given".into()),
            "key" => key = true,
            "hostpath" if hostpath => return Err("hostpath already given".into()),
            "hostpath" => hostpath = true,
            "size" | "disklabel" => sized = true,
            "offset" => {}
            "type" if typ.is_some() => return Err("type already specified".into()),
            "type" if ["blk", "chr", "reg"].contains(&value) => typ = Some(value.to_string()),
            "type" => return Err(format!("invalid type {value}")),
            _ => return Err("invalid dtoken".into()),
        }
    }
    if !key || !hostpath || (!sized && typ.as_deref() != Some("reg")) {
        return Err("incomplete drivespec".into());
    }
    Ok(())
}

/// `-c`: a number of CPUs or `host`; `-r`: bytes with an optional k/m/g/t suffix or a
/// percentage of host memory (what NetBSD's rumpuser takes in RUMP_NCPU / RUMP_MEMLIMIT).
fn check_numbers(o: &Opts) -> Result<(), Fail> {
    if let Some(n) = &o.ncpu {
        if n != "host" && !n.parse::<u32>().is_ok_and(|n| n > 0) {
            return Err(fail(format!(
                "rump init failed: Invalid argument (-c {n}: want a number of CPUs or \"host\")"
            )));
        }
    }
    if let Some(r) = &o.ram {
        let digits = r.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', 't', 'T', '%']);
        let suffix = r.len() - digits.len();
        if digits.is_empty() || suffix > 1 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail(format!(
                "rump init failed: Invalid argument (-r {r}: want bytes, with k, m, g or t, \
                 or a percentage of host memory)"
            )));
        }
    }
    Ok(())
}

/// The node binary: `$SHMLAB_NETSTACK`, `netstack` beside this executable (symlinks
/// resolved), or on `PATH`.
fn find_netstack() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SHMLAB_NETSTACK") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("SHMLAB_NETSTACK={}: no such file", p.display()))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("netstack"));
    if let Some(p) = beside.as_ref().filter(|p| p.is_file()) {
        return Ok(p.clone());
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("netstack"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    on_path.ok_or_else(|| {
        let beside = beside
            .map(|p| format!(", {}", p.display()))
            .unwrap_or_default();
        format!(
            "the netstack binary is not installed (looked at $SHMLAB_NETSTACK{beside} and PATH; \
             tools/compat/install DIR installs both)"
        )
    })
}

fn start(prog: &str, all: bool, args: &[String]) -> Result<(), Fail> {
    let o = parse(prog, args)?;
    let base = if all {
        components::all()
    } else {
        Loaded::default()
    };
    let loaded = base.load(&o.libs).map_err(|e| fail(e.to_string()))?;
    check_numbers(&o)?;
    if let Some(m) = o.modules.first() {
        return Err(fail(format!(
            "module load failed: Operation not supported ({m}: netstack nodes load no kernel \
             modules; their protocols are components, -l)"
        )));
    }
    if let Some(d) = o.drives.first() {
        return Err(fail(format!(
            "etfs register failed: Operation not supported (-d {d}: netstack nodes have no \
             block devices or file systems)"
        )));
    }
    let socket = url::parse(&o.url).map_err(|e| {
        let mut lines: Vec<String> = e.detail.into_iter().collect();
        lines.push(format!("rump server init failed: {}", e.errno));
        Fail(lines)
    })?;
    let bin = find_netstack().map_err(|e| fail(format!("rump server init failed: {e}")))?;
    let mut cmd = node_command(&bin, &socket, &o, &loaded);
    if o.foreground {
        let e = cmd.exec();
        return Err(fail(format!(
            "rump server init failed: cannot run {}: {e}",
            bin.display()
        )));
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    // With -v the node's log is our stderr for good, so its errors come straight through too.
    cmd.stderr(if o.verbose {
        Stdio::inherit()
    } else {
        Stdio::piped()
    });
    let out = cmd.output().map_err(|e| {
        fail(format!(
            "rump server init failed: cannot run {}: {e}",
            bin.display()
        ))
    })?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let l = l.strip_prefix("netstack: ").unwrap_or(l);
            format!("rump server init failed: {l}")
        })
        .collect();
    if lines.is_empty() && !o.verbose {
        lines.push(format!(
            "rump server init failed: the node exited ({})",
            out.status
        ));
    }
    Err(Fail(lines))
}

/// The netstack command line and environment for this server.
fn node_command(bin: &Path, socket: &Path, o: &Opts, loaded: &Loaded) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--socket").arg(socket);
    match (o.foreground, o.verbose) {
        (true, true) => {
            cmd.arg("--foreground");
        }
        (true, false) => {
            cmd.args(["--foreground", "--log", "/dev/null"]);
        }
        (false, true) => {
            cmd.args(["--log", "/dev/stderr"]);
        }
        (false, false) => {}
    }
    // The node is not a rump client: a hijack library meant for the commands stays out of it.
    for var in ["LD_PRELOAD", "RUMPHIJACK", "RUMP_SERVER"] {
        cmd.env_remove(var);
    }
    cmd.env(ENV, loaded.to_env());
    let vars: [(&str, Option<OsString>); 3] = [
        ("RUMP_NCPU", o.ncpu.clone().map(Into::into)),
        ("RUMP_MEMLIMIT", o.ram.clone().map(Into::into)),
        ("RUMP_VERBOSE", o.verbose.then(|| "1".into())),
    ];
    for (k, v) in vars {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd
}

pub fn main(prog: &str, all: bool, args: &[String]) -> ExitCode {
    match start(prog, all, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(lines)) => {
            for l in lines {
                eprintln!("{l}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Opts, Vec<String>> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse("rump_server", &args).map_err(|Fail(l)| l)
    }

    #[test]
    fn getopt_words() {
        let o = p(&["-lrumpnet", "-l", "rumpnet_net", "-sv", "-c2", "unix://s"]).unwrap();
        assert_eq!(o.libs, ["rumpnet", "rumpnet_net"]);
        assert!(o.foreground && o.verbose);
        assert_eq!(o.ncpu.as_deref(), Some("2"));
        assert_eq!(o.url, "unix://s");
        // Options stop at the operand; a second operand is a usage error.
        assert!(p(&["unix://s", "-s"]).is_err());
        assert_eq!(p(&["--", "-x"]).unwrap().url, "-x");
    }

    #[test]
    fn getopt_complaints() {
        let usage =
            "usage: rump_server [-s] [-c ncpu] [-d drivespec] [-l libs] [-m modules] bindurl";
        assert_eq!(
            p(&["-x", "unix://s"]).unwrap_err(),
            ["rump_server: unknown option -- x", usage]
        );
        assert_eq!(
            p(&["-l"]).unwrap_err(),
            ["rump_server: option requires an argument -- l", usage]
        );
        assert_eq!(p(&[]).unwrap_err(), [usage]);
    }

    #[test]
    fn drivespecs() {
        assert!(check_drivespec("key=/k,hostpath=img,size=1m").is_ok());
        assert!(check_drivespec("key=/k,hostpath=f,type=reg").is_ok());
        assert_eq!(
            check_drivespec("key=/k").unwrap_err(),
            "incomplete drivespec"
        );
        assert_eq!(check_drivespec("bogus=1").unwrap_err(), "invalid dtoken");
        assert_eq!(
            check_drivespec("key=a,key=b").unwrap_err(),
            "key already given"
        );
    }

    #[test]
    fn numbers() {
        let with = |c: Option<&str>, r: Option<&str>| {
            check_numbers(&Opts {
                ncpu: c.map(str::to_string),
                ram: r.map(str::to_string),
                ..Opts::default()
            })
            .is_ok()
        };
        assert!(with(Some("2"), Some("64m")) && with(Some("host"), Some("50%")));
        assert!(!with(Some("0"), None) && !with(Some("x"), None));
        assert!(!with(None, Some("m")) && !with(None, Some("1mm")));
    }
}
