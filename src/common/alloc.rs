//! Large buffers (a file's metadata and hashes, a catalog answer: up to 16
//! MiB) are mapped on their own, so that one freed goes back to the system
//! at once.
//!
//! glibc raises its mmap threshold to the size of each large block freed (up
//! to 32 MiB); from then on such buffers come from the heap, where freed ones
//! stay resident and fragment it. Chunks no longer make large buffers (they
//! move in pieces of 256 KiB, `peer::machine::PIECE`); when whole 4 MiB
//! chunks were queued, 128 callers that never read took a seeder to 61 MiB
//! that way, 49 MiB with a fixed threshold (`tests/hostile_peers.rs`).

/// Blocks at least this large are mapped; smaller ones (pieces, frames) come
/// from the heap (no page faults per piece).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MAPPED: libc::c_int = 1024 * 1024;

/// Sets the allocator's threshold for mapped blocks; called once at start.
pub fn map_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets one allocator parameter; it is called before any
    // thread is started and takes no pointer.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MAPPED);
    }
}
