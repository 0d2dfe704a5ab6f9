//! Decoding a request never reserves memory for more than the bytes that arrived: array
//! lengths on the wire are untrusted, and an allocation that the OS refuses (strict
//! overcommit, memory limits) aborts the process, which no error handling can catch.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use proto_compat::request::{decode_request, RequestError};

/// The system allocator, remembering the largest single allocation since the last reset.
struct LargestAllocation;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// A Metadata v4 request (api key 3) whose topics array claims `claimed` elements, followed
/// by `filler` bytes in which the first element does not decode (a string length of -2).
fn metadata_request_claiming(claimed: i32, filler: usize) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_i16(3); // api key
    frame.put_i16(4); // api version
    frame.put_i32(7); // correlation id
    frame.put_i16(-1); // null client id
    frame.put_i32(claimed);
    frame.put_i16(-2);
    frame.put_bytes(0, filler);
    frame.freeze()
}

#[test]
fn a_claimed_array_length_reserves_at_most_the_bytes_that_arrived() {
    let frame = metadata_request_claiming(i32::MAX, 1 << 20);
    let frame_len = frame.len();
    LARGEST.store(0, Ordering::Relaxed);
    let result = decode_request(frame);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        matches!(result, Err(RequestError::Malformed { .. })),
        "{result:?}"
    );
    // Each topic takes far more memory than one wire byte: a reservation of one element per
    // byte left would be tens of MiB here.
    assert!(
        largest <= frame_len,
        "decoding a {frame_len}-byte frame made a {largest}-byte allocation"
    );
}
