//! Rump server URLs, as NetBSD's `parseurl` (sp_common.c) reads them: `unix://PATH`, a relative
//! PATH being relative to the current directory (`unix://sock`, `unix:///tmp/sock`).
//! `tcp://` and `tcp6://` exist in NetBSD; shmlab nodes listen on Unix sockets only.

use std::path::PathBuf;

/// sockaddr_un's sun_path: NetBSD refuses a path that does not fit with its terminating NUL.
const SUN_PATH: usize = 108;

/// Why a URL is refused: NetBSD's `rump_sp:` line (if it prints one) and the errno text the
/// caller reports it with.
#[derive(Debug, PartialEq, Eq)]
pub struct UrlError {
    pub detail: Option<String>,
    pub errno: &'static str,
}

const EINVAL: &str = "Invalid argument";

pub fn parse(url: &str) -> Result<PathBuf, UrlError> {
    let invalid = |detail: String| UrlError {
        detail: Some(detail),
        errno: EINVAL,
    };
    let Some((id, addr)) = url.split_once("://") else {
        return Err(invalid(format!("rump_sp: invalid locator ``{url}''")));
    };
    if id.len() > 15 {
        return Err(invalid(format!(
            "rump_sp: identifier too long in ``{url}''"
        )));
    }
    match id {
        "unix" if addr.is_empty() => Err(invalid(format!(
            "rump_sp: no socket path in ``{url}'' (unix://PATH)"
        ))),
        "unix" if addr.len() >= SUN_PATH => Err(UrlError {
            detail: None,
            errno: "File name too long",
        }),
        "unix" => Ok(PathBuf::from(addr)),
        "tcp" | "tcp6" => Err(UrlError {
            detail: Some(format!(
                "rump_sp: ``{url}'': shmlab rump servers listen on unix:// sockets only"
            )),
            errno: "Operation not supported",
        }),
        _ => Err(invalid(format!("rump_sp: invalid identifier ``{url}''"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_urls() {
        assert_eq!(parse("unix://sock"), Ok(PathBuf::from("sock")));
        assert_eq!(parse("unix://a/b"), Ok(PathBuf::from("a/b")));
        assert_eq!(parse("unix:///tmp/s"), Ok(PathBuf::from("/tmp/s")));
    }

    #[test]
    fn refusals_say_why() {
        let e = parse("sock").unwrap_err();
        assert_eq!(
            e.detail.as_deref(),
            Some("rump_sp: invalid locator ``sock''")
        );
        assert_eq!(e.errno, "Invalid argument");
        let e = parse("udp://x").unwrap_err();
        assert_eq!(
            e.detail.as_deref(),
            Some("rump_sp: invalid identifier ``udp://x''")
        );
        assert_eq!(
            parse("tcp://1.2.3.4:5").unwrap_err().errno,
            "Operation not supported"
        );
        assert!(parse("unix://").is_err());
        let long = format!("unix://{}", "x".repeat(108));
        assert_eq!(parse(&long).unwrap_err().errno, "File name too long");
    }
}
