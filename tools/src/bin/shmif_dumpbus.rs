//! `shmif_dumpbus [-h] [-p pcapfile] buspath`: examine a shmif bus file, as NetBSD's tool does.
//!
//! Same output as NetBSD's `usr.bin/shmif_dumpbus` rev 1.19 for the same bus: the header line,
//! then one line per record (both on stderr when the pcap goes to stdout with `-p -`), and with
//! `-p` a classic pcap byte-identical to what its `pcap_open_dead(DLT_EN10MB, 1518)` +
//! `pcap_dump` write on this host. Options are parsed like NetBSD's `getopt("hp:")`, and its
//! messages (usage, open, magic, version, pcap file) are NetBSD's words.
//!
//! Where NetBSD's tool would crash or hang, and a few other places, we differ on purpose:
//! - A file below 1 MiB is refused (NetBSD dies of SIGBUS or fails `mmap`); the ring is the file
//!   less its 32-byte header, which is NetBSD's fixed ring on its 1 MiB buses and lets larger
//!   shmlab buses be dumped.
//! - `firstoff` beyond the ring is an error after the header line (NetBSD: assertion).
//! - A record longer than 64 KiB ends the walk with a warning, before its line (NetBSD prints
//!   the line, then asserts or overruns its buffer). A walk that would repeat forever (the
//!   newest record ends exactly at the end of the ring, for one) ends with a warning once every
//!   record was printed. Both exit 0: what was printed and dumped is complete and valid.
//!   (When the newest record straddles the end of the ring, NetBSD's walk reads on into the
//!   stale bytes after it; so do we, and these stops are where that usually ends.)
//! - An unhandled version gets a second line naming the file and what the version means.
//! - `--help` prints the usage and exits 0. Write errors are reported (NetBSD ignores them);
//!   a closed pipe ends the dump quietly (NetBSD dies of SIGPIPE).
//! - The bus is read once, with `read`, so a bus written meanwhile gives a consistent snapshot.
#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

use shmif::dump::{self, DumpError, WalkStop};
use shmif::pcap::PcapSink;

const USAGE_ARGS: &str = "[-h] [-p pcapfile] buspath";

struct Args {
    header_only: bool,
    pcap: Option<OsString>,
    bus: OsString,
}

enum Parsed {
    Run(Args),
    Help,
    /// getopt's complaint, if it made one; the usage follows.
    Usage(Option<String>),
}

/// NetBSD's `getopt(argc, argv, "hp:")` then `argc == 1`: options stop at the first operand,
/// at `--` and at a lone `-`; `-p` takes the rest of its word or the next word; `-hpfile` works.
fn parse_args(prog: &str, args: &[OsString]) -> Parsed {
    let mut header_only = false;
    let mut pcap = None;
    let mut i = 0;
    while i < args.len() {
        let word = args[i].as_bytes();
        if word == b"--help" {
            return Parsed::Help;
        }
        if word.len() < 2 || word[0] != b'-' {
            break;
        }
        i += 1;
        if word == b"--" {
            break;
        }
        let mut at = 1;
        while at < word.len() {
            let opt = word[at];
            at += 1;
            match opt {
                b'h' => header_only = true,
                b'p' if at < word.len() => {
                    // The rest of the word is the argument: `-pfile`.
                    pcap = Some(OsStr::from_bytes(&word[at..]).to_os_string());
                    break;
                }
                b'p' => match args.get(i) {
                    Some(arg) => {
                        pcap = Some(arg.clone());
                        i += 1;
                    }
                    None => {
                        return Parsed::Usage(Some(format!(
                            "{prog}: option requires an argument -- p"
                        )))
                    }
                },
                other => {
                    return Parsed::Usage(Some(format!(
                        "{prog}: unknown option -- {}",
                        char::from(other)
                    )))
                }
            }
        }
    }
    match &args[i..] {
        [bus] => Parsed::Run(Args {
            header_only,
            pcap,
            bus: bus.clone(),
        }),
        _ => Parsed::Usage(None),
    }
}

/// How a run ends badly: NetBSD's `err`/`errx` lines, without the program name.
enum Failure {
    Message(Vec<String>),
    /// The reader of our output went away.
    BrokenPipe,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::Message(vec![format!("writing output: {}", strerror(&e))])
        }
    }
}

/// The C library's text for an error, as `err(3)` prints it (without Rust's "(os error N)").
fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map(str::to_string)
            .unwrap_or(text),
        None => text,
    }
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // NetBSD's `setprogname(argv[0])`: messages start with the command's base name.
    let prog = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "shmif_dumpbus".to_string());
    let args = match parse_args(&prog, argv.get(1..).unwrap_or_default()) {
        Parsed::Run(args) => args,
        Parsed::Help => {
            println!(
                "Usage: {prog} {USAGE_ARGS}\n\
                 Examine shmif bus contents.\n  \
                 -h          print the bus header only and skip the contents\n  \
                 -p pcapfile write the frames as a pcap file; - is stdout (text then goes to \
                 stderr)\n\
                 Example: {prog} -p - busfile | tcpdump -r -\n\
                 The bus is read without its lock: best used after the traffic has stopped."
            );
            return ExitCode::SUCCESS;
        }
        Parsed::Usage(complaint) => {
            if let Some(c) = complaint {
                eprintln!("{c}");
            }
            eprintln!("Usage: {prog} {USAGE_ARGS}");
            return ExitCode::FAILURE;
        }
    };
    match run(&prog, &args) {
        Ok(()) | Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::Message(lines)) => {
            for line in lines {
                eprintln!("{prog}: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn read_bus(path: &Path) -> Result<Vec<u8>, Failure> {
    let shown = path.display();
    let fail = |what: &str, e: io::Error| {
        Failure::Message(vec![format!("{what} bus file `{shown}': {}", strerror(&e))])
    };
    let mut file = File::open(path).map_err(|e| fail("Can't open", e))?;
    let meta = file.metadata().map_err(|e| fail("Can't stat", e))?;
    let mut image = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut image)
        .map_err(|e| fail("Can't read", e))?;
    Ok(image)
}

/// NetBSD's messages for a file that is not a bus, plus ours where NetBSD has none.
fn not_a_bus(path: &Path, e: &DumpError) -> Failure {
    let shown = path.display();
    Failure::Message(match e {
        DumpError::BadMagic(_) => vec![format!("{shown} {e}")],
        DumpError::Version(v) => vec![
            e.to_string(),
            format!(
                "{shown}: {}",
                if *v == 0 {
                    "nothing was ever sent on this bus (NetBSD sets the version on the first send)"
                } else {
                    "written by a shmif this tool does not know"
                }
            ),
        ],
        DumpError::FirstOutside { .. } => vec![format!(
            "{shown}: {e}: not a bus a shmif writer left (NetBSD's shmif_dumpbus aborts here)"
        )],
        DumpError::Truncated(_) | DumpError::TooLarge(_) => vec![format!("{shown}: {e}")],
    })
}

fn run(prog: &str, args: &Args) -> Result<(), Failure> {
    let bus = Path::new(&args.bus);
    let image = read_bus(bus)?;
    let header = dump::parse_header(&image).map_err(|e| not_a_bus(bus, &e))?;
    let pcap_to_stdout = args.pcap.as_deref() == Some("-".as_ref());
    // Text goes wherever the pcap stream is not.
    let mut text: Box<dyn Write> = if pcap_to_stdout {
        Box::new(BufWriter::new(io::stderr().lock()))
    } else {
        Box::new(BufWriter::new(io::stdout().lock()))
    };
    writeln!(text, "{}", header.line())?;
    if args.header_only {
        text.flush()?;
        return Ok(());
    }

    // Like NetBSD, the pcap file exists (with its header) before the walk starts.
    let mut pcap: Option<PcapSink<Box<dyn Write>>> = match &args.pcap {
        None => None,
        Some(_) if pcap_to_stdout => {
            let out: Box<dyn Write> = Box::new(BufWriter::new(io::stdout().lock()));
            Some(PcapSink::new(out)?)
        }
        Some(path) => {
            let shown = Path::new(path).display();
            let cannot = |e: io::Error| {
                // libpcap's pcap_geterr() text is "<file>: <strerror>".
                Failure::Message(vec![format!(
                    "Cannot open pcap dump file `{shown}': {shown}: {}",
                    strerror(&e)
                )])
            };
            text.flush()?;
            let file = File::create(path).map_err(cannot)?;
            let out: Box<dyn Write> = Box::new(BufWriter::new(file));
            Some(PcapSink::new(out).map_err(|e| {
                Failure::Message(vec![format!("writing `{shown}': {}", strerror(&e))])
            })?)
        }
    };

    let mut walk = dump::walk(&image).map_err(|e| {
        let _ = text.flush();
        not_a_bus(bus, &e)
    })?;
    let pcap_name = args
        .pcap
        .as_deref()
        .map(|p| Path::new(p).display().to_string());
    let pcap_error = |e: io::Error| match e.kind() {
        io::ErrorKind::BrokenPipe => Failure::BrokenPipe,
        _ => Failure::Message(vec![format!(
            "writing `{}': {}",
            pcap_name.as_deref().unwrap_or("-"),
            strerror(&e)
        )]),
    };
    for (i, record) in walk.by_ref().enumerate() {
        writeln!(text, "{}", record.line(i))?;
        if let Some(sink) = pcap.as_mut() {
            sink.write(record.sec, record.usec, &record.frame)
                .map_err(&pcap_error)?;
        }
    }
    text.flush()?;
    if let Some(sink) = pcap {
        sink.finish().map_err(&pcap_error)?;
    }

    let shown = bus.display();
    match walk.stop() {
        None => {}
        Some(WalkStop::Oversize {
            offset,
            len,
            past_newest: false,
        }) => eprintln!(
            "{prog}: {shown}: warning: stopped at the record at ring offset {offset:#x}: its \
             length {len:#x} is over 64 KiB (NetBSD's shmif_dumpbus aborts there); was the bus \
             written while dumping?"
        ),
        Some(WalkStop::Oversize {
            offset,
            len,
            past_newest: true,
        }) => eprintln!(
            "{prog}: {shown}: warning: stopped at ring offset {offset:#x}, after the newest \
             record: the stale bytes there claim {len:#x} bytes, over 64 KiB (NetBSD's \
             shmif_dumpbus walks on into them when the newest record crosses the end of the \
             ring, and aborts there)"
        ),
        Some(WalkStop::Loop { offset }) => eprintln!(
            "{prog}: {shown}: warning: stopped when the walk came back to ring offset \
             {offset:#x} (lastoff {:#x}): NetBSD's shmif_dumpbus would repeat the records from \
             there forever",
            header.last
        ),
    }
    Ok(())
}
