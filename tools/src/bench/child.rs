//! Parent and child ends of the one-line-per-message protocol between the runner and the
//! processes it re-executes in a role. Children print to stdout and read stdin; their stderr is
//! the runner's, so a child's error shows up as it happens.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{bail, Context};

/// A child process running a role.
pub struct RoleProcess {
    what: String,
    child: std::process::Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl RoleProcess {
    pub fn spawn(exe: &Path, role: &str, args: &[String]) -> anyhow::Result<RoleProcess> {
        let what = format!("{role} {}", args.join(" "));
        let mut child = Command::new(exe)
            .arg(role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} {what}", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(RoleProcess {
            what,
            child,
            stdin,
            stdout,
        })
    }

    /// The child's next line, without the newline. A child that exits first is an error.
    pub fn read_line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .with_context(|| format!("reading from {}", self.what))?;
        if n == 0 {
            let status = self.child.wait()?;
            bail!("{} exited ({status}) before answering", self.what);
        }
        Ok(line.trim_end().to_string())
    }

    pub fn expect(&mut self, want: &str) -> anyhow::Result<()> {
        let got = self.read_line()?;
        if got != want {
            bail!("{}: expected {want:?}, got {got:?}", self.what);
        }
        Ok(())
    }

    pub fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().expect("stdin open until wait");
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .with_context(|| format!("writing to {}", self.what))
    }

    /// Closes stdin and waits for a clean exit.
    pub fn wait(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            bail!("{} failed: {status}", self.what);
        }
        Ok(())
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        // On an error path the child may still be waiting for "go": closing stdin ends it, and
        // reaping it avoids a zombie. After `wait` this finds nothing to do.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Child side: one line to the parent.
pub fn tell_parent(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Child side: the parent's next line, or `None` once the parent closed our stdin.
pub fn hear_parent() -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end().to_string()))
}
