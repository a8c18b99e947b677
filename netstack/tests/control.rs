//! Control socket abuse: malformed JSON, huge lines, clients that vanish mid-command.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{tempdir, Node};
use netstack::client::{self, ClientError, Connection, Stream};
use netstack::control::Reply;

fn replies_until_exit(r: &mut BufReader<UnixStream>) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            return out;
        }
        let rep: Reply = serde_json::from_str(line.trim_end()).unwrap();
        let done = matches!(rep, Reply::Exit(_));
        out.push(rep);
        if done {
            return out;
        }
    }
}

#[test]
fn malformed_requests_get_an_error_and_the_connection_stays_usable() {
    let dir = tempdir();
    let a = Node::start(dir.path(), "a");
    let s = UnixStream::connect(&a.sock).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    for bad in [
        "this is not json",
        "{\"argv\": []}",
        "{\"argv\": \"ifconfig\"}",
        "{\"argv\": [\"ifconfig\"], \"bogus\": 1}",
        "[1,2,3]",
        "\u{0}\u{1}\u{2}",
    ] {
        w.write_all(format!("{bad}\n").as_bytes()).unwrap();
        let reps = replies_until_exit(&mut r);
        assert!(
            matches!(reps.first(), Some(Reply::Err(_))),
            "{bad}: {reps:?}"
        );
        assert!(
            matches!(reps.last(), Some(Reply::Exit(c)) if *c != 0),
            "{bad}: {reps:?}"
        );
    }
    // Same connection, a valid request now.
    w.write_all(b"{\"argv\": [\"sysctl\", \"net.inet.ip.ttl\"]}\n")
        .unwrap();
    let reps = replies_until_exit(&mut r);
    assert_eq!(
        reps,
        vec![Reply::Out("net.inet.ip.ttl = 64".into()), Reply::Exit(0)]
    );
}

#[test]
fn a_ten_megabyte_line_is_refused_and_the_node_stays_up() {
    let dir = tempdir();
    let mut a = Node::start(dir.path(), "a");
    let s = UnixStream::connect(&a.sock).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..10 {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = w.write_all(b"\n");
    });
    let mut r = BufReader::new(s);
    let reps = replies_until_exit(&mut r);
    assert!(
        matches!(reps.first(), Some(Reply::Err(m)) if m.contains("longer than")),
        "{reps:?}"
    );
    writer.join().unwrap();
    assert!(a.alive());
    a.ok("ifconfig -a");
}

#[test]
fn clients_that_disconnect_mid_command_do_not_hurt_the_node() {
    let dir = tempdir();
    let bus = dir.path().join("bus");
    let mut a = Node::start(dir.path(), "a");
    let b = Node::start(dir.path(), "b");
    a.iface("shmif0", &bus, "10.0.0.1/24");
    b.iface("shmif0", &bus, "10.0.0.2/24");

    // An endless ping: read its first line, then hang up.
    let s = UnixStream::connect(&a.sock).unwrap();
    let mut w = s.try_clone().unwrap();
    w.write_all(b"{\"argv\": [\"ping\", \"-i\", \"0.05\", \"10.0.0.2\"]}\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut first = String::new();
    r.read_line(&mut first).unwrap();
    assert!(first.contains("PING 10.0.0.2"), "{first}");
    drop(r);
    drop(w);
    // A request sent without reading any of the answer.
    let mut s = UnixStream::connect(&a.sock).unwrap();
    s.write_all(b"{\"argv\": [\"ping\", \"-c\", \"3\", \"-i\", \"0.05\", \"10.0.0.2\"]}\n")
        .unwrap();
    drop(s);
    // A connection that sends half a request and closes.
    let mut s = UnixStream::connect(&a.sock).unwrap();
    s.write_all(b"{\"argv\": [\"ifcon").unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(500));

    assert!(a.alive());
    let out = a.ok("ping -c 1 10.0.0.2");
    assert!(out.contains("1 packets received"), "{out}");

    // Several commands over one connection, streamed through the library client.
    let mut c = Connection::open(&a.sock).unwrap();
    let mut lines = Vec::new();
    let code = c
        .run(&["ifconfig".into(), "-l".into()], None, |s, l| {
            lines.push((s, l.to_string()))
        })
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(lines, vec![(Stream::Out, "shmif0".to_string())]);
    let code = c.run(&["nope".into()], None, |_, _| {}).unwrap();
    assert_eq!(code, 127);
}

#[test]
fn client_errors_name_the_socket() {
    let dir = tempdir();
    let missing = dir.path().join("missing.sock");
    let e = client::run(&missing, &["ifconfig".into()], None, |_, _| {}).unwrap_err();
    assert!(matches!(e, ClientError::SocketMissing { .. }));
    assert!(e.to_string().contains("missing.sock"), "{e}");
    // A socket file nobody listens on.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let e = client::run(&stale, &["ifconfig".into()], None, |_, _| {}).unwrap_err();
    assert!(matches!(e, ClientError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("stale.sock"), "{e}");
}

/// Needs root (to run the client as another uid) and setpriv; skipped otherwise unless
/// SHMLAB_REQUIRE_ALL=1.
#[test]
fn connections_from_another_uid_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = rustix::process::getuid().is_root();
    let setpriv = std::path::Path::new("/usr/bin/setpriv").exists();
    if !(root && setpriv) {
        assert!(
            std::env::var_os("SHMLAB_REQUIRE_ALL").is_none(),
            "needs root and /usr/bin/setpriv"
        );
        eprintln!("skipped: needs root and /usr/bin/setpriv to act as another uid");
        return;
    }
    let dir = tempdir();
    let mut a = Node::start(dir.path(), "a");
    // Open the path up so only the peer-credential check stands in the way.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&a.sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::CTL)
        .arg(&a.sock)
        .args(["ifconfig", "-a"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(77), "{err}");
    assert!(err.contains("permission denied: uid 65534"), "{err}");
    assert!(a.alive());
    a.ok("ifconfig -a");
}
