//! The tap itself: open/create, frame I/O, link settings, counters.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tun_rs::{DeviceBuilder, Layer, SyncDevice};

use crate::error::{Error, SendError, MAX_MTU, MIN_MTU};
use crate::netns::{run_in, NetNs};

/// The clone device every tap is opened through.
pub const TUN_DEVICE: &str = "/dev/net/tun";

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
pub const MAX_NAME_LEN: usize = 15;

/// Smallest frame a tap takes: an Ethernet header.
pub const MIN_FRAME: usize = 14;

/// How to open a tap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapConfig<'a> {
    /// Interface name, e.g. "tap0". Opens the tap if it exists (a persistent tap made with
    /// `ip tuntap add mode tap`), creates it otherwise. A `%d` in the name lets the kernel pick
    /// the number; [`Tap::name`] then gives the real name.
    pub name: &'a str,
    /// A named network namespace (`/run/netns/NAME`, as made by `ip netns add`) to open the tap
    /// in; `None` for the caller's own namespace.
    pub netns: Option<String>,
    /// MTU to set; `None` leaves it as it is (1500 for a new tap).
    pub mtu: Option<u32>,
    /// Bring the interface up (`true`) or down (`false`) once open.
    pub up: bool,
}

impl<'a> TapConfig<'a> {
    /// `name` in the caller's namespace, MTU untouched, brought up.
    pub fn new(name: &'a str) -> TapConfig<'a> {
        TapConfig {
            name,
            netns: None,
            mtu: None,
            up: true,
        }
    }
}

/// A snapshot of a tap's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames written to the tap (handed to the kernel).
    pub sent: u64,
    pub sent_bytes: u64,
    /// Frames read from the tap and delivered to the caller.
    pub received: u64,
    pub received_bytes: u64,
    /// Frames refused before writing: shorter than an Ethernet header.
    pub runts: u64,
    /// Writes the kernel refused (interface down, oversize, ...).
    pub send_errors: u64,
    /// Frames longer than the caller's buffer, dropped on receive.
    pub truncated: u64,
    /// Reads that failed (the tap was deleted under us, ...).
    pub recv_errors: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
    runts: AtomicU64,
    send_errors: AtomicU64,
    truncated: AtomicU64,
    recv_errors: AtomicU64,
}

impl Counters {
    fn stats(&self) -> Stats {
        Stats {
            sent: self.sent.load(Relaxed),
            sent_bytes: self.sent_bytes.load(Relaxed),
            received: self.received.load(Relaxed),
            received_bytes: self.received_bytes.load(Relaxed),
            runts: self.runts.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
            truncated: self.truncated.load(Relaxed),
            recv_errors: self.recv_errors.load(Relaxed),
        }
    }
}

struct Shared {
    /// Non-blocking descriptor; dropped (closing the tap) with the last handle.
    dev: SyncDevice,
    name: String,
    netns: Option<NetNs>,
    mac: [u8; 6],
    counters: Counters,
}

/// The sending and control half of a tap: cheap to clone, usable from any thread.
///
/// Besides writing frames it changes and reads link settings, so the thread that owns the
/// protocol state (and so handles `ifconfig`) needs only this half.
#[derive(Clone)]
pub struct TapSender {
    shared: Arc<Shared>,
}

/// An open tap: the receiving half, which also hands out [`TapSender`]s.
///
/// The tap is closed when this and every sender are dropped. A tap we created then disappears
/// from the kernel; a persistent one (`ip tuntap add`) stays, with no carrier.
pub struct Tap {
    tx: TapSender,
}

impl Tap {
    /// Opens (or creates) the tap `config.name`, in `config.netns` if given, then applies the
    /// MTU and up state.
    pub fn open(config: &TapConfig<'_>) -> Result<Tap, Error> {
        let name = config.name;
        check_name(name)?;
        let mtu = match config.mtu {
            Some(mtu) => Some(check_mtu(name, mtu)?),
            None => None,
        };
        let netns = match &config.netns {
            Some(ns) => Some(NetNs::open(ns, name)?),
            None => None,
        };
        let where_ = where_suffix(netns.as_ref());
        let (dev, real_name, mac) = run_in(netns.as_ref(), name, || {
            let dev = create(name, &where_)?;
            let real_name = dev.name().map_err(|source| Error::Io {
                name: name.to_owned(),
                op: "reading back the interface name".to_owned(),
                source,
            })?;
            if let Some(mtu) = mtu {
                dev.set_mtu(mtu)
                    .map_err(|e| mtu_error(&real_name, mtu.into(), e))?;
            }
            dev.enabled(config.up).map_err(|source| Error::Io {
                name: real_name.clone(),
                op: format!("setting the interface {}", up_word(config.up)),
                source,
            })?;
            let mac = dev.mac_address().map_err(|source| Error::Io {
                name: real_name.clone(),
                op: "reading the MAC address".to_owned(),
                source,
            })?;
            Ok((dev, real_name, mac))
        })?;
        dev.set_nonblocking(true).map_err(|source| Error::Io {
            name: real_name.clone(),
            op: "making the descriptor non-blocking".to_owned(),
            source,
        })?;
        Ok(Tap {
            tx: TapSender {
                shared: Arc::new(Shared {
                    dev,
                    name: real_name,
                    netns,
                    mac,
                    counters: Counters::default(),
                }),
            },
        })
    }

    /// A sending/control handle for another thread.
    pub fn sender(&self) -> TapSender {
        self.tx.clone()
    }

    /// Waits up to `timeout` for one frame and copies it into `buf`. `Ok(None)` on timeout.
    ///
    /// Give a buffer of at least MTU + 14 bytes (+ 4 if VLAN-tagged frames may come): a longer
    /// frame is dropped and counted in [`Stats::truncated`], and the wait goes on.
    pub fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, Error> {
        let deadline = Instant::now().checked_add(timeout);
        let shared = &self.tx.shared;
        loop {
            // The kernel silently cuts a frame to the buffer and returns the cut length, so
            // read one spare byte more: if it fills, the frame did not fit.
            let mut spare = [0u8; 1];
            let mut iov = [IoSliceMut::new(buf), IoSliceMut::new(&mut spare)];
            match shared.dev.recv_vectored(&mut iov) {
                Ok(n) if n > iov[0].len() => {
                    shared.counters.truncated.fetch_add(1, Relaxed);
                    continue;
                }
                Ok(n) => {
                    shared.counters.received.fetch_add(1, Relaxed);
                    shared.counters.received_bytes.fetch_add(n as u64, Relaxed);
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(source) => {
                    shared.counters.recv_errors.fetch_add(1, Relaxed);
                    return Err(Error::Io {
                        name: shared.name.clone(),
                        op: "reading a frame".to_owned(),
                        source,
                    });
                }
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Ok(None);
            }
            self.wait_readable(left)?;
        }
    }

    /// Waits for a frame with no timeout, or until `wake` (an eventfd or pipe another thread
    /// writes to) becomes readable: then `Ok(None)`. Lets a reader thread sleep until there is
    /// something to do instead of waking on a timer to see whether it should stop.
    pub fn recv_or_wake(
        &mut self,
        buf: &mut [u8],
        wake: BorrowedFd<'_>,
    ) -> Result<Option<usize>, Error> {
        loop {
            if let Some(n) = self.recv(buf, Duration::ZERO)? {
                return Ok(Some(n));
            }
            let shared = &self.tx.shared;
            let mut fds = [
                PollFd::new(&shared.dev, PollFlags::IN),
                PollFd::new(&wake, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) if !fds[1].revents().is_empty() => return Ok(None),
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(Error::Io {
                        name: shared.name.clone(),
                        op: "waiting for a frame".to_owned(),
                        source: e.into(),
                    })
                }
            }
        }
    }

    /// Takes one frame if one is queued, without waiting.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        self.recv(buf, Duration::ZERO)
    }

    fn wait_readable(&self, left: Duration) -> Result<(), Error> {
        let shared = &self.tx.shared;
        // Cap each sleep so a Duration::MAX timeout cannot overflow the timespec.
        let left = left.min(Duration::from_secs(3600));
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(&shared.dev, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(Error::Io {
                name: shared.name.clone(),
                op: "waiting for a frame".to_owned(),
                source: e.into(),
            }),
        }
    }

    pub fn send(&self, frame: &[u8]) -> Result<(), SendError> {
        self.tx.send(frame)
    }
    pub fn name(&self) -> &str {
        self.tx.name()
    }
    pub fn netns(&self) -> Option<&str> {
        self.tx.netns()
    }
    pub fn mac(&self) -> [u8; 6] {
        self.tx.mac()
    }
    pub fn stats(&self) -> Stats {
        self.tx.stats()
    }
    pub fn mtu(&self) -> Result<u32, Error> {
        self.tx.mtu()
    }
    pub fn set_mtu(&self, mtu: u32) -> Result<(), Error> {
        self.tx.set_mtu(mtu)
    }
    pub fn is_up(&self) -> Result<bool, Error> {
        self.tx.is_up()
    }
    pub fn set_up(&self, up: bool) -> Result<(), Error> {
        self.tx.set_up(up)
    }
}

/// The descriptor, for callers that poll a tap together with other sources. It is
/// non-blocking; read frames only through [`Tap::recv`].
impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tx.shared.dev.as_fd()
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.tx.fmt(f)
    }
}

impl std::fmt::Debug for TapSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("name", &self.shared.name)
            .field("netns", &self.netns())
            .field("mac", &format_mac(self.shared.mac))
            .finish()
    }
}

impl TapSender {
    /// Writes one whole Ethernet frame (no FCS); the kernel receives it as if from a wire.
    pub fn send(&self, frame: &[u8]) -> Result<(), SendError> {
        let shared = &self.shared;
        if frame.len() < MIN_FRAME {
            shared.counters.runts.fetch_add(1, Relaxed);
            return Err(SendError::Runt {
                name: shared.name.clone(),
                len: frame.len(),
            });
        }
        loop {
            match shared.dev.send(frame) {
                Ok(_) => {
                    shared.counters.sent.fetch_add(1, Relaxed);
                    shared
                        .counters
                        .sent_bytes
                        .fetch_add(frame.len() as u64, Relaxed);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    shared.counters.send_errors.fetch_add(1, Relaxed);
                    return Err(SendError::Down {
                        name: shared.name.clone(),
                    });
                }
                Err(source) => {
                    shared.counters.send_errors.fetch_add(1, Relaxed);
                    return Err(SendError::Io {
                        name: shared.name.clone(),
                        len: frame.len(),
                        source,
                    });
                }
            }
        }
    }

    /// The kernel's interface name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The named namespace the tap lives in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.shared.netns.as_ref().map(NetNs::name)
    }

    /// The MAC of the kernel side of the tap, as read at open. Frames for the kernel go to it;
    /// a node behind the tap should use an address of its own.
    pub fn mac(&self) -> [u8; 6] {
        self.shared.mac
    }

    pub fn stats(&self) -> Stats {
        self.shared.counters.stats()
    }

    pub fn mtu(&self) -> Result<u32, Error> {
        self.in_netns("reading the MTU", |dev| dev.mtu().map(u32::from))
    }

    pub fn set_mtu(&self, mtu: u32) -> Result<(), Error> {
        let name = &self.shared.name;
        let mtu16 = check_mtu(name, mtu)?;
        run_in(self.shared.netns.as_ref(), name, || {
            self.shared
                .dev
                .set_mtu(mtu16)
                .map_err(|e| mtu_error(name, mtu, e))
        })
    }

    /// Whether the interface is administratively up (and, being a tap that we hold open,
    /// running).
    pub fn is_up(&self) -> Result<bool, Error> {
        self.in_netns("reading the interface flags", |dev| dev.is_running())
    }

    pub fn set_up(&self, up: bool) -> Result<(), Error> {
        let op = format!("setting the interface {}", up_word(up));
        self.in_netns(&op, |dev| dev.enabled(up))
    }

    /// Runs one tun-rs call in the tap's namespace, labelling an error with `op`.
    fn in_netns<T: Send>(
        &self,
        op: &str,
        f: impl FnOnce(&SyncDevice) -> io::Result<T> + Send,
    ) -> Result<T, Error> {
        let shared = &*self.shared;
        run_in(shared.netns.as_ref(), &shared.name, || {
            f(&shared.dev).map_err(|source| Error::Io {
                name: shared.name.clone(),
                op: op.to_owned(),
                source,
            })
        })
    }
}

/// The kernel's dev_valid_name(), so a bad name gets our message rather than EINVAL.
fn check_name(name: &str) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::NameTooLong {
            name: name.to_owned(),
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not interface names"));
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(invalid("it contains '/', ':', NUL or whitespace"));
    }
    Ok(())
}

fn check_mtu(name: &str, mtu: u32) -> Result<u16, Error> {
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(Error::BadMtu {
            name: name.to_owned(),
            mtu,
        });
    }
    // MAX_MTU < 65536, so this always converts.
    u16::try_from(mtu).map_err(|_| Error::BadMtu {
        name: name.to_owned(),
        mtu,
    })
}

fn mtu_error(name: &str, mtu: u32, e: io::Error) -> Error {
    if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) {
        Error::BadMtu {
            name: name.to_owned(),
            mtu,
        }
    } else {
        Error::Io {
            name: name.to_owned(),
            op: format!("setting MTU {mtu}"),
            source: e,
        }
    }
}

fn up_word(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

fn where_suffix(netns: Option<&NetNs>) -> String {
    match netns {
        Some(ns) => format!(" in network namespace \"{}\"", ns.name()),
        None => String::new(),
    }
}

/// Opens the clone device and attaches to (or creates) tap `name` in the current thread's
/// namespace.
fn create(name: &str, where_: &str) -> Result<SyncDevice, Error> {
    check_device(name, Path::new(TUN_DEVICE))?;
    DeviceBuilder::new()
        .name(name)
        .layer(Layer::L2)
        .inherit_enable_state()
        .build_sync()
        .map_err(|e| {
            let errno = e.raw_os_error().map(rustix::io::Errno::from_raw_os_error);
            match errno {
                Some(rustix::io::Errno::PERM) | Some(rustix::io::Errno::ACCESS) => {
                    Error::NeedsCapNetAdmin {
                        name: name.to_owned(),
                        device: TUN_DEVICE.into(),
                        hint: String::new(),
                    }
                }
                Some(rustix::io::Errno::INVAL) => Error::NotATap {
                    name: name.to_owned(),
                    where_: where_.to_owned(),
                },
                Some(rustix::io::Errno::BUSY) => Error::Busy {
                    name: name.to_owned(),
                    where_: where_.to_owned(),
                },
                _ => Error::Io {
                    name: name.to_owned(),
                    op: format!("creating the tap{where_}"),
                    source: e,
                },
            }
        })
}

/// Checks that `device` exists and that we may open it, so those two failures get their own
/// messages (and tun-rs never tries to create the node itself).
pub(crate) fn check_device(name: &str, device: &Path) -> Result<(), Error> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NoTunDevice {
            name: name.to_owned(),
            device: device.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(Error::NeedsCapNetAdmin {
            name: name.to_owned(),
            device: device.to_owned(),
            hint: device_mode_hint(device),
        }),
        Err(source) => Err(Error::Io {
            name: name.to_owned(),
            op: format!("opening {}", device.display()),
            source,
        }),
    }
}

/// When the device node is not world read-write, a user namespace cannot open it either.
fn device_mode_hint(device: &Path) -> String {
    match std::fs::metadata(device) {
        Ok(meta) if meta.permissions().mode() & 0o006 != 0o006 => format!(
            " (and {0} is mode {1:04o}, so a user namespace alone cannot open it: \
             as root, 'chmod 0666 {0}')",
            device.display(),
            meta.permissions().mode() & 0o7777
        ),
        _ => String::new(),
    }
}

/// `aa:bb:cc:dd:ee:ff`, as `ip link` prints it.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_name_is_refused_with_the_limit() {
        let err = Tap::open(&TapConfig::new("a-very-long-tapname")).unwrap_err();
        assert!(matches!(
            err,
            Error::NameTooLong {
                len: 19,
                max: 15,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "a-very-long-tapname: interface name is 19 bytes, the kernel allows at most 15"
        );
    }

    #[test]
    fn names_the_kernel_refuses_are_refused_first() {
        for bad in ["", ".", "..", "tap/0", "tap 0", "tap:0"] {
            let err = Tap::open(&TapConfig::new(bad)).unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn out_of_range_mtu_is_refused_before_touching_the_kernel() {
        for mtu in [0, 67, 65522, u32::MAX] {
            let cfg = TapConfig {
                mtu: Some(mtu),
                ..TapConfig::new("virt0")
            };
            let err = Tap::open(&cfg).unwrap_err();
            assert!(matches!(err, Error::BadMtu { .. }), "{mtu}: {err}");
            assert!(err.to_string().contains("68..=65521"), "{err}");
        }
    }

    #[test]
    fn missing_tun_device_is_named() {
        let err = check_device("virt0", Path::new("/nonexistent/net/tun")).unwrap_err();
        assert!(matches!(err, Error::NoTunDevice { .. }));
        let msg = err.to_string();
        assert!(
            msg.starts_with("virt0: /nonexistent/net/tun does not exist"),
            "{msg}"
        );
        assert!(msg.contains("modprobe tun"), "{msg}");
    }

    #[test]
    fn missing_netns_is_named_with_its_path() {
        let cfg = TapConfig {
            netns: Some("shmlab-virtif-no-such-ns".to_owned()),
            ..TapConfig::new("virt0")
        };
        let msg = Tap::open(&cfg).unwrap_err().to_string();
        assert_eq!(
            msg,
            "virt0: network namespace \"shmlab-virtif-no-such-ns\" does not exist \
             (/run/netns/shmlab-virtif-no-such-ns is missing); \
             create it with 'ip netns add shmlab-virtif-no-such-ns'"
        );
    }

    #[test]
    fn cap_net_admin_message_names_device_and_remedy() {
        let err = Error::NeedsCapNetAdmin {
            name: "virt0".into(),
            device: TUN_DEVICE.into(),
            hint: String::new(),
        };
        assert_eq!(
            err.to_string(),
            "virt0: opening /dev/net/tun needs CAP_NET_ADMIN; run as root or inside 'unshare -rn'"
        );
    }

    #[test]
    fn mac_formats_like_ip_link() {
        assert_eq!(
            format_mac([0xb2, 0xa0, 0, 1, 0x2b, 0xff]),
            "b2:a0:00:01:2b:ff"
        );
    }
}
