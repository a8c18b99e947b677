//! Named network namespaces (`ip netns`): a held descriptor and a way to run a closure inside.
//!
//! The kernel binds a tap to the namespace of whoever opens `/dev/net/tun`, and interface ioctls
//! (MTU, flags, MAC) look names up in the caller's namespace. So opening and configuring a tap in
//! another namespace happens on a short-lived thread that `setns`es first; the process and all
//! its other threads never move. Frame I/O on the tap descriptor needs no namespace at all.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use crate::error::Error;

/// Where `ip netns add NAME` puts its bind mounts.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// An open handle on a named network namespace. Holding it keeps the namespace alive.
#[derive(Debug)]
pub(crate) struct NetNs {
    name: String,
    file: File,
}

impl NetNs {
    /// Opens `/run/netns/NAME`; `ifname` only labels errors.
    pub(crate) fn open(netns: &str, ifname: &str) -> Result<NetNs, Error> {
        let path = PathBuf::from(NETNS_RUN_DIR).join(netns);
        if netns.is_empty() || netns.contains('/') || netns == "." || netns == ".." {
            return Err(Error::NetnsNotFound {
                name: ifname.to_owned(),
                netns: netns.to_owned(),
                path,
            });
        }
        match File::open(&path) {
            Ok(file) => Ok(NetNs {
                name: netns.to_owned(),
                file,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NetnsNotFound {
                name: ifname.to_owned(),
                netns: netns.to_owned(),
                path,
            }),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(Error::NetnsDenied {
                name: ifname.to_owned(),
                netns: netns.to_owned(),
                path,
            }),
            Err(source) => Err(Error::Io {
                name: ifname.to_owned(),
                op: format!("opening {}", path.display()),
                source,
            }),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_RUN_DIR).join(&self.name)
    }

    /// Runs `f` on a fresh thread that has entered this namespace, and returns what it returns.
    pub(crate) fn run<T, F>(&self, ifname: &str, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> Result<T, Error> + Send,
        T: Send,
    {
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name(format!("virtif-netns-{}", self.name))
                .spawn_scoped(scope, || {
                    move_into_link_name_space(self.file.as_fd(), Some(LinkNameSpaceType::Network))
                        .map_err(|e| self.setns_error(ifname, e.into()))?;
                    f()
                })
                .map_err(|source| Error::Io {
                    name: ifname.to_owned(),
                    op: "starting a thread to enter the network namespace".to_owned(),
                    source,
                })?;
            spawned.join().unwrap_or_else(|_| {
                Err(Error::Io {
                    name: ifname.to_owned(),
                    op: format!("working inside network namespace \"{}\"", self.name),
                    source: io::Error::other("the worker thread panicked"),
                })
            })
        })
    }

    fn setns_error(&self, ifname: &str, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::PermissionDenied {
            Error::NetnsDenied {
                name: ifname.to_owned(),
                netns: self.name.clone(),
                path: self.path(),
            }
        } else {
            Error::Io {
                name: ifname.to_owned(),
                op: format!("entering network namespace \"{}\"", self.name),
                source: e,
            }
        }
    }
}

/// Runs `f` in `netns` if there is one, else right here.
pub(crate) fn run_in<T, F>(netns: Option<&NetNs>, ifname: &str, f: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send,
    T: Send,
{
    match netns {
        Some(ns) => ns.run(ifname, f),
        None => f(),
    }
}
