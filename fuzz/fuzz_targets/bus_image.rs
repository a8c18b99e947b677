//! Untrusted bus images into `shmif_dumpbus`'s parser: the input is laid over the start of a
//! 1 MiB image (header, then the ring), usually after a valid magic and version so the ring is
//! read, and what parses is written as pcap.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;

thread_local! {
    /// One zeroed 1 MiB image, reused: only the bytes a run wrote are cleared after it.
    static IMAGE: RefCell<Vec<u8>> = RefCell::new(vec![0u8; 1 << 20]);
}

fuzz_target!(|data: &[u8]| {
    IMAGE.with_borrow_mut(|image| {
        let n = data.len().min(image.len());
        image[..n].copy_from_slice(&data[..n]);
        // Keep the magic and version right most of the time, so the fuzzer reaches the records.
        if data.first().is_some_and(|b| b & 1 == 0) {
            image[0..4].copy_from_slice(&shmif::format::MAGIC.to_ne_bytes());
            image[4..8].copy_from_slice(&shmif::format::VERSION.to_ne_bytes());
        }
        if let Ok(dump) = shmif::dump::parse(image) {
            let _ = shmif::dump::write_pcap(std::io::sink(), &dump.records);
        }
        image[..n.max(8)].fill(0);
    });
});
