//! labctl commands that need no running node: validate, graph, completions, help.

mod common;

use common::*;

fn env() -> Env {
    Env::new(std::path::PathBuf::from("/nonexistent/netstack"))
}

#[test]
fn shipped_topologies_are_valid() {
    let env = env();
    for f in [
        "two-hosts.toml",
        "router-chain.toml",
        "campus.toml",
        "linux-peer.toml",
    ] {
        let p = repo_root().join("topologies").join(f);
        let out = env.ok(&["validate", p.to_str().unwrap()]);
        assert!(out.contains("is valid"), "{out}");
    }
    let campus = repo_root().join("topologies/campus.toml");
    let out = env.ok(&["validate", campus.to_str().unwrap()]);
    let nodes: usize = out
        .split(" nodes")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(nodes >= 12, "campus has {nodes} nodes");
}

#[test]
fn validate_reports_every_error_with_file_line_column() {
    let env = env();
    let topo = env.topo(
        "topo.toml",
        r#"name = "bad lab"
[buses.lan1]
[buses.wan]
[nodes.r1]
forwarding = true
interfaces = [
    { bus = "lan1", addrs = ["10.0.1.1/24"] },
    { bus = "wan2", addrs = ["20.0.0.1/24"] },
]
[nodes.h1]
interfaces = [{ bus = "lan1", addrs = ["10.0.1.1/24"] }]
routes = [{ to = "default", via = "10.0.9.1" }]
"#,
    );
    let err = env.fails(&["validate", &topo]);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].ends_with("topo.toml:1:8: name: lab name \"bad lab\" is not a safe file name: contains ' '; use only letters, digits, '.', '_' and '-'"), "{err}");
    assert!(lines[1].ends_with("topo.toml:8:13: nodes.r1.interfaces[1].bus: unknown bus \"wan2\" (known: lan1, wan); a bus with a single member must be declared with [buses.wan2]"), "{err}");
    assert!(lines[2].ends_with("topo.toml:11:40: nodes.h1.interfaces[0].addrs[0]: duplicate address 10.0.1.1 (already on node r1 at nodes.r1.interfaces[0].addrs[0], line 7)"), "{err}");
    assert!(lines[3].ends_with("topo.toml:12:35: nodes.h1.routes[0].via: gateway 10.0.9.1 is not on any connected subnet of h1 (connected: 10.0.1.0/24)"), "{err}");
    assert_eq!(lines[4], "4 errors", "{err}");
}

#[test]
fn validate_notes_what_up_will_refuse() {
    let env = env();
    let topo = env.topo(
        "t.toml",
        r#"name = "future"
[nodes.h1]
kind = "rump"
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
[nodes.h2]
ipsec = { setkey = "flush;" }
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24", "fd00::1/64"] }]
[nodes.l1]
kind = "linux"
interfaces = [{ bus = "lan", addrs = ["10.0.0.3/24", "fd00::3/64"] }]
"#,
    );
    let out = env.ok(&["validate", &topo]);
    assert!(
        out.contains("t.toml:3:8: nodes.h1.kind: kind \"rump\" is not implemented yet"),
        "{out}"
    );
    // Linux nodes start, and apply their IPv6 addresses.
    assert!(!out.contains("nodes.l1"), "{out}");
    assert!(!out.contains("fd00::3/64 not applied"), "{out}");
    assert!(
        out.contains("nodes.h2.ipsec: IPsec is not implemented yet"),
        "{out}"
    );
    // Netstack nodes apply their IPv6 addresses too.
    assert!(!out.contains("not applied"), "{out}");
    // `up` refuses before it starts anything.
    let err = env.fails(&["up", &topo]);
    assert!(err.contains("IPsec is not implemented yet"), "{err}");
    assert!(!env.lab_dir("future").exists());
}

#[test]
fn graph_draws_nodes_buses_and_addresses() {
    let env = env();
    let p = repo_root().join("topologies/router-chain.toml");
    let dot = env.ok(&["graph", p.to_str().unwrap()]);
    assert!(dot.starts_with("graph \"router-chain\" {"), "{dot}");
    assert!(
        dot.contains("\"node:r1\" -- \"bus:lan1\" [label=\"shmif0\\n10.0.1.1/24\\nfd00:1::1/64\"]"),
        "{dot}"
    );
    let mermaid = env.ok(&["graph", p.to_str().unwrap(), "--format", "mermaid"]);
    assert!(mermaid.starts_with("graph LR\n"), "{mermaid}");
    assert!(
        mermaid.contains("node_r1 ---|\"shmif1 10.1.1.1/24 fd00:10:1::1/64\"| bus_l1"),
        "{mermaid}"
    );
    if std::process::Command::new("dot").arg("-V").output().is_ok() {
        let mut child = std::process::Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dot.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "graphviz rejects our DOT");
    }
}

#[test]
fn graph_marks_linux_nodes_and_draws_host_taps() {
    let env = env();
    let topo = env.topo(
        "t.toml",
        r#"name = "taps"
[nodes.l1]
kind = "linux"
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
[nodes.n1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }, { tap = "tap9", addrs = ["10.9.0.2/24"] }]
"#,
    );
    let dot = env.ok(&["graph", &topo]);
    assert!(dot.contains("label=\"l1\\n(linux)\""), "{dot}");
    assert!(
        dot.contains("\"tap:tap9\" [shape=diamond, label=\"host tap tap9\"]"),
        "{dot}"
    );
    assert!(
        dot.contains("\"node:n1\" -- \"tap:tap9\" [label=\"virt0\\n10.9.0.2/24\"]"),
        "{dot}"
    );
    let mermaid = env.ok(&["graph", &topo, "--format", "mermaid"]);
    assert!(mermaid.contains("tap_tap9[/host tap tap9/]"), "{mermaid}");
}

#[test]
fn completions_cover_every_subcommand() {
    let env = env();
    let bash = env.ok(&["completions", "bash"]);
    for cmd in [
        "up", "down", "status", "ls", "exec", "test", "capture", "dump", "validate", "graph",
    ] {
        assert!(bash.contains(cmd), "bash completion lacks {cmd}");
    }
    assert!(env.ok(&["completions", "zsh"]).contains("#compdef labctl"));
}

#[test]
fn every_command_has_help() {
    let env = env();
    for cmd in [
        "up",
        "down",
        "status",
        "ls",
        "exec",
        "test",
        "capture",
        "dump",
        "validate",
        "graph",
        "completions",
    ] {
        let out = env.ok(&[cmd, "--help"]);
        assert!(out.contains("Usage: labctl"), "{cmd}: {out}");
    }
}

#[test]
fn down_of_a_lab_that_is_not_up_says_so() {
    let env = env();
    let err = env.fails(&["down", "ghost"]);
    assert!(err.contains("lab \"ghost\" is not up"), "{err}");
    assert!(err.contains("running labs: none"), "{err}");
}

#[test]
fn a_closed_stdout_pipe_ends_labctl_quietly() {
    let env = env();
    let mut text = String::from("name = \"big\"\n");
    for i in 0..2000 {
        text += &format!(
            "[nodes.n{i}]\ninterfaces = [{{ bus = \"b\", addrs = [\"10.{}.{}.1/8\"] }}]\n",
            i / 250,
            i % 250
        );
    }
    let topo = env.topo("big.toml", &text);
    // More output than a pipe buffer holds, to a reader that is already gone.
    let mut child = env
        .labctl()
        .args(["graph", &topo])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}
