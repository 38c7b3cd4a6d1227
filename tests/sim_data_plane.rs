//! The data plane's steady state, counted: once two members talk directly, a frame
//! from A's TAP to B's TAP allocates nothing and hands nothing to the control core, as
//! long as the driver gives its buffers back with `recycle`. Handed over as the packet
//! threads do, a frame is sealed in the buffer it was read into, and a reassembled one
//! reaches the TAP queue in the buffer it was opened in.
//!
//! A counting global allocator (this test binary only) counts allocations made on the
//! test's own thread while a flag is up; the flag is up only around the node calls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use skylan::node::FRAME_HEADROOM;
use skylan::node::switch::SwitchSettings;
use skylan::sim::cores::NodeHost;
use skylan::sim::mesh::{Mesh, Placement};
use skylan::sim::{AccessLink, HostId};
use skylan::types::{Endpoint, NetworkId, Transmit};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// thread-local cells that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note() {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations `f` makes on this thread.
fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, ALLOCATIONS.with(Cell::get) - before)
}

fn network() -> NetworkId {
    "8056c2e21c000001".parse().unwrap()
}

/// Two public members of a network configured without a controller (no rules), talking
/// directly after a few pings.
fn direct_pair() -> (Mesh, HostId, HostId) {
    let mut m = Mesh::build(
        11,
        &[AccessLink::default()],
        &[Placement::Public, Placement::Public],
        AccessLink::default(),
    );
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let members = [m.address(a), m.address(b)];
    for h in [a, b] {
        m.sim.with_host::<NodeHost, _>(h, |h, now| {
            h.node.join(now, network());
            h.node
                .set_network(network(), 1, SwitchSettings::open(&members), None, None)
        });
    }
    for _ in 0..5 {
        let pong = m.ping(a, b, Duration::from_secs(10));
        m.sim.run_for(Duration::from_secs(1));
        if matches!(pong, Some((_, skylan::node::Link::Direct(_)))) {
            return (m, a, b);
        }
    }
    panic!("A and B did not go direct");
}

/// How frames are handed over: as the simulator does (a slice in; out, a frame moved
/// to the start of its buffer), or as the packet threads do (a buffer with headroom
/// that the seal may take; out, a frame left where it was opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handover {
    Slices,
    InPlace,
}

/// One frame from A's TAP to B's TAP by hand (not through the simulator), giving A
/// back the datagrams of the previous one; returns the allocations on both sides.
/// `buf` is the buffer A's TAP reads into (`InPlace`).
fn one_frame(
    m: &mut Mesh,
    (a, b): (HostId, HostId),
    frame: &[u8],
    sent: &mut Vec<Transmit>,
    handover: Handover,
    buf: &mut Vec<u8>,
) -> u64 {
    let from: Endpoint = m.sim.endpoint(a);
    let local: Endpoint = m.sim.endpoint(b);
    let (_, on_a) = m.sim.with_host::<NodeHost, _>(a, |h, now| {
        counted(|| {
            for t in sent.drain(..) {
                h.node.recycle(t.contents);
            }
            let read = buf.as_ptr();
            let out = match handover {
                Handover::Slices => h.node.handle_tap_frame(now, network(), frame),
                Handover::InPlace => {
                    buf.clear();
                    buf.resize(FRAME_HEADROOM, 0);
                    buf.extend_from_slice(frame);
                    h.node.handle_tap_buffer(now, network(), buf)
                }
            };
            out.expect("the switch lets it out");
            while let Some(t) = h.node.poll_transmit() {
                sent.push(t);
            }
            if handover == Handover::InPlace {
                assert_eq!(sent[0].contents.as_ptr(), read, "sealed where it was read");
                assert_ne!(buf.as_ptr(), read, "another buffer for the next read");
            }
        })
    });
    let (got, on_b) = m.sim.with_host::<NodeHost, _>(b, |h, now| {
        counted(|| {
            let tap = match handover {
                Handover::Slices => {
                    for t in sent.iter() {
                        h.node.handle_datagram(now, local, from, &t.contents);
                    }
                    h.node.poll_tap().map(|t| (t, 0))
                }
                Handover::InPlace => {
                    for t in sent.iter_mut() {
                        h.node
                            .handle_datagram_in_place(now, local, from, &mut t.contents);
                    }
                    h.node.poll_tap_at()
                }
            };
            let got = tap.map(|(t, start)| {
                let same = t.frame.get(start..) == Some(frame);
                h.node.recycle(t.frame);
                (same, start)
            });
            assert!(h.node.poll_tap().is_none(), "one frame");
            got
        })
    });
    let (same, start) = got.expect("the frame reached B's TAP");
    assert!(same, "B's TAP got the frame A's TAP read");
    if handover == Handover::InPlace && sent.len() > 1 {
        assert!(
            start > 0,
            "a reassembled frame is delivered where it was opened"
        );
    }
    on_a + on_b
}

#[test]
fn a_steady_direct_frame_allocates_nothing_and_stays_in_the_data_plane() {
    let (v, n) = counted(|| std::hint::black_box(Vec::<u8>::with_capacity(64)));
    assert_eq!((v.capacity() >= 64, n), (true, 1), "the counter counts");
    // A small frame (one datagram) and a full frame of the default MTU (two fragments),
    // handed over both ways.
    for (len, handover) in [
        (1_200, Handover::Slices),
        (1_200, Handover::InPlace),
        (2_770, Handover::Slices),
        (2_770, Handover::InPlace),
    ] {
        let (mut m, a, b) = direct_pair();
        let frame = m.frame(a, b, network(), 7, len);
        let mut sent = Vec::with_capacity(16);
        let mut buf = Vec::with_capacity(4096);
        // Warm up: pools, queues and hash entries reach their working size.
        for _ in 0..50 {
            one_frame(&mut m, (a, b), &frame, &mut sent, handover, &mut buf);
        }
        let handed = |m: &mut Mesh| {
            [a, b].map(|h| {
                m.sim
                    .with_host::<NodeHost, _>(h, |h, _| h.node.data_plane().handed_over())
            })
        };
        let before = handed(&mut m);
        let version = m.node(b).node.snapshot().version();
        let allocations: u64 = (0..200)
            .map(|_| one_frame(&mut m, (a, b), &frame, &mut sent, handover, &mut buf))
            .sum();
        let case = format!("{len}-byte frames, {handover:?}");
        assert_eq!(allocations, 0, "allocations in 200 {case}");
        assert_eq!(
            handed(&mut m),
            before,
            "nothing went to the control core: {case}"
        );
        assert_eq!(
            m.node(b).node.snapshot().version(),
            version,
            "nothing republished: {case}"
        );
    }
}
