//! `shmif_dumpbus [-h] [-p pcapfile|-] BUS`: examine a shmif bus file, as NetBSD's tool does.
//!
//! Reads the whole file once without the lock (a post-mortem tool, like NetBSD's), prints the
//! header line and one line per record, and optionally writes the frames as a classic pcap.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use shmif::dump::{self, DumpError};
use shmif::format::BUS_HEADER_SIZE;

/// Examine shmif bus contents.
#[derive(Parser, Debug)]
#[command(
    name = "shmif_dumpbus",
    override_usage = "shmif_dumpbus [-h] [-p pcapfile|-] BUS",
    // `-h` is NetBSD's "header only"; help stays reachable as `--help`.
    disable_help_flag = true,
    after_help = "Example: shmif_dumpbus -p - busfile | tcpdump -r -\n\
                  The bus is read without its lock: best used after the traffic has stopped."
)]
struct Args {
    /// Print the bus header only and skip the contents.
    #[arg(short = 'h')]
    header_only: bool,
    /// Write the frames as a pcap file (DLT_EN10MB, snaplen 1518); `-` is stdout.
    #[arg(short = 'p', value_name = "pcapfile")]
    pcap: Option<PathBuf>,
    /// The bus file.
    #[arg(value_name = "BUS")]
    bus: PathBuf,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        // `shmif_dumpbus BUS | head` is normal use: stop quietly when the reader goes away.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmif_dumpbus: {}: {e:#}", args.bus.display());
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run(args: &Args) -> anyhow::Result<()> {
    let image = std::fs::read(&args.bus)?;
    let header = dump::parse_header(&image).map_err(explain)?;
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

    let walked = dump::parse(&image).map_err(explain)?;
    if header.first > header.data_size || header.last >= header.data_size {
        bail!(
            "header points outside the ring of {:#x} bytes (firstoff {:#x}, lastoff {:#x}): \
             file truncated or not written by a shmif writer",
            image.len() - BUS_HEADER_SIZE,
            header.first,
            header.last
        );
    }
    for (i, r) in walked.records.iter().enumerate() {
        writeln!(
            text,
            "packet {i}, offset 0x{:04x}, length 0x{:04x}, ts {}/{:06}",
            r.payload_offset,
            r.frame.len(),
            r.sec,
            r.usec
        )?;
    }
    text.flush()?;

    if let Some(path) = &args.pcap {
        if pcap_to_stdout {
            dump::write_pcap(BufWriter::new(io::stdout().lock()), &walked.records)
                .context("writing pcap to stdout")?;
        } else {
            let file =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            dump::write_pcap(BufWriter::new(file), &walked.records)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }

    if walked.corrupt > 0 {
        eprintln!(
            "shmif_dumpbus: {}: warning: skipped {} corrupt record{} (the walk stops at the \
             first record whose length cannot be right; was the bus written while dumping?)",
            args.bus.display(),
            walked.corrupt,
            if walked.corrupt == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// Adds what to do to the library's description of a file that is not a bus.
fn explain(e: DumpError) -> anyhow::Error {
    let hint = match &e {
        DumpError::Truncated(_) => "cut short, or not a bus file",
        DumpError::BadMagic(_) => "is this the right file?",
        // A bus nobody has sent on has version 0 in NetBSD: there is nothing to dump.
        DumpError::Version(0) => "nothing was ever sent on this bus",
        DumpError::Version(_) => "written by an incompatible shmif",
    };
    anyhow::anyhow!("{e} ({hint})")
}
