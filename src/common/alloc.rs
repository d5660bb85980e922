//! Large buffers (a chunk and its frame, up to 16 MiB) are mapped on their
//! own, so that one freed goes back to the system at once.
//!
//! glibc raises its mmap threshold to the size of each large block freed (up
//! to 32 MiB); from then on chunk buffers come from the heap, where freed
//! ones stay resident and fragment it. 128 callers that never read, under a
//! budget of 42.5 MiB of unsent 4 MiB chunks, took a seeder to 61 MiB in 15
//! s that way; with a fixed threshold 49 MiB (`tests/hostile_peers.rs`).

/// Blocks at least this large are mapped: chunks of 1 MiB and more. Smaller
/// chunks come from the heap as before (no page faults per chunk), and their
/// budget is small enough that fragmenting it costs little.
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
