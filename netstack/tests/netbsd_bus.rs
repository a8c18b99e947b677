//! `ifconfig shmifN linkstr PATH netbsd`: a bus made for a later NetBSD rump peer.

mod common;

use common::{tempdir, Node};

const MIB: u64 = 1024 * 1024;

#[test]
fn linkstr_netbsd_creates_a_1mib_netbsd_mode_bus_that_a_plain_peer_joins() {
    let dir = tempdir();
    let bus = dir.path().join("lan.bus");
    let a = Node::start(dir.path(), "a");
    let b = Node::start(dir.path(), "b");
    a.ok("ifconfig shmif0 create");
    a.ok(&format!("ifconfig shmif0 linkstr {} netbsd", bus.display()));
    a.ok("ifconfig shmif0 inet 10.0.0.1/24 up");

    assert_eq!(std::fs::metadata(&bus).unwrap().len(), MIB);
    let attached = shmif::Bus::attach(&bus, &shmif::BusConfig::default()).unwrap();
    assert!(attached.netbsd_mode(), "{:?}", attached.header());

    // NetBSD's own syntax, no keyword: the mode comes from the bus.
    b.iface("shmif0", &bus, "10.0.0.2/24");
    let out = b.ok("ping -c 2 -i 0.1 10.0.0.1");
    assert!(
        out.contains("2 packets transmitted, 2 packets received"),
        "{out}"
    );

    for n in [&a, &b] {
        let text = n.ok("ifconfig shmif0");
        assert!(
            text.contains(&format!(
                "\tlinkstr: {}\n\tbus mode: netbsd\n",
                bus.display()
            )),
            "{text}"
        );
        let v = n.json("ifconfig -v shmif0");
        assert_eq!(v["bus_mode"], "netbsd", "{v}");
        for key in [
            "foreign",
            "uncounted_resyncs",
            "lock_broken_dead",
            "lock_broken_zombie",
            "lock_broken_silent",
            "lock_broken_stuck",
        ] {
            assert_eq!(v["bus"][key], 0, "{key}: {v}");
        }
        let text = n.ok("ifconfig -v shmif0");
        assert!(
            text.contains(", foreign 0, corrupt 0, resyncs 0, uncounted_resyncs 0, lock_recoveries 0 (dead 0, zombie 0, silent 0, stuck 0), ring_resets 0, "),
            "{text}"
        );
    }
}

#[test]
fn linkstr_netbsd_refuses_an_existing_8mib_bus_naming_interface_and_file() {
    let dir = tempdir();
    let bus = dir.path().join("big.bus");
    drop(shmif::Bus::attach(&bus, &shmif::BusConfig::default()).unwrap());
    assert_eq!(std::fs::metadata(&bus).unwrap().len(), 8 * MIB);
    let a = Node::start(dir.path(), "a");

    let o = a.run(&[
        "ifconfig",
        "shmif0",
        "create",
        "linkstr",
        bus.to_str().unwrap(),
        "netbsd",
    ]);
    assert_ne!(o.code, 0, "{o:?}");
    let want = format!(
        "shmif0: linkstr: {}: bus file is 8388608 bytes; a bus shared with NetBSD must be exactly 1048576",
        bus.display()
    );
    assert!(o.stderr.contains(&want), "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
    // The failed create left no interface behind, and the bus is untouched.
    assert!(a.ok("ifconfig -l").trim().is_empty());
    assert_eq!(std::fs::metadata(&bus).unwrap().len(), 8 * MIB);

    // Without the keyword the same bus is a plain shmlab bus.
    a.iface("shmif0", &bus, "10.0.0.1/24");
    let text = a.ok("ifconfig shmif0");
    assert!(text.contains("\tbus mode: shmlab\n"), "{text}");
    assert_eq!(a.json("ifconfig shmif0")["bus_mode"], "shmlab");
}

#[test]
fn netbsd_keyword_is_only_for_a_bus_path() {
    let dir = tempdir();
    let a = Node::start(dir.path(), "a");
    for (args, want) in [
        (
            vec!["ifconfig", "virt0", "create", "linkstr", "tap7", "netbsd"],
            "virt0: linkstr ... netbsd is for buses (shmifN)",
        ),
        (
            vec!["ifconfig", "shmif0", "create", "netbsd"],
            "netbsd: goes right after the bus path: linkstr PATH netbsd",
        ),
    ] {
        let o = a.run(&args);
        assert_ne!(o.code, 0, "{args:?}: {o:?}");
        assert!(o.stderr.contains(want), "{args:?}: {o:?}");
    }
    assert!(a.ok("ifconfig -l").trim().is_empty());
}
