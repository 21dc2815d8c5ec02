//! The process allocator, and handing memory back to the system after large writes.
//!
//! The binary allocates with mimalloc (see `main.rs`), built without transparent
//! huge pages so that resident memory follows what is in use. mimalloc returns
//! freed pages to the system lazily, when a thread next allocates; after a large
//! ingestion the threads that did the work may stay idle for hours, holding pages
//! the catalog no longer needs. `release` returns them at once.

/// Returns every free page the allocator holds to the system. Cheap enough to call
/// after each large write, not on every request.
#[allow(unsafe_code)]
pub fn release() {
    // SAFETY: `mi_collect` takes no pointers and touches only mimalloc's own state;
    // mimalloc allows it from any thread at any time. If mimalloc is not the global
    // allocator (the library in tests), it only collects mimalloc's empty heaps.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
