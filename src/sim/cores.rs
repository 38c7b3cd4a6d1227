//! The protocol cores as simulator hosts: [`Root`] directly, and the node core through
//! [`NodeHost`], which also does what the real node driver does with the core's events
//! (verifies and applies network configs; as a controller, answers config requests and
//! pushes changes, through [`crate::service::member`]) and collects the rest (events
//! and TAP frames) so scenario tests can assert on them.

use std::sync::Arc;

use super::Host;
use crate::controller::Controller;
use crate::node::{Event, Node, TapFrame};
use crate::root::Root;
use crate::service::member::{self, IdentitySigner, Serving};
use crate::types::{Endpoint, NetworkId, Time, Transmit};

impl Host for Root {
    fn handle_datagram(&mut self, now: Time, local: Endpoint, from: Endpoint, data: &[u8]) {
        Root::handle_datagram(self, now, local, from, data);
    }
    fn handle_timeout(&mut self, now: Time) {
        Root::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Root::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Time> {
        Root::poll_timeout(self)
    }
}

/// A node core plus the events and TAP frames it produced, in order.
pub struct NodeHost {
    /// The node core.
    pub node: Node,
    /// Every event the node emitted.
    pub events: Vec<Event>,
    /// Every frame the node delivered to its (virtual) TAP.
    pub tap: Vec<TapFrame>,
    /// The controller, when this node runs one.
    pub controller: Option<Serving>,
    now: Time,
}

impl NodeHost {
    /// Wraps a node.
    pub fn new(node: Node) -> Self {
        Self {
            node,
            events: Vec::new(),
            tap: Vec::new(),
            controller: None,
            now: Time::ZERO,
        }
    }

    /// Makes this node a controller (`signer` must be the node's own identity).
    pub fn with_controller(mut self, controller: Controller, signer: IdentitySigner) -> Self {
        self.controller = Some(Serving::new(Arc::new(controller), signer));
        self
    }

    /// (Controller) sends fresh configs or refusals for `network` to every member that
    /// asked for it, as the driver does after a change.
    pub fn push(&mut self, now: Time, network: NetworkId) {
        if let Some(c) = &self.controller {
            // Invariant: a simulated controller's in-memory store does not fail.
            c.push(&mut self.node, now, super::wall(now), network)
                .expect("simulated controller push");
        }
        self.collect();
    }

    /// The control core publishes incrementally: after every input, checks that nothing
    /// it must publish was missed (debug builds). A miss stays until the next check, so
    /// commands between inputs are covered by the input after them.
    fn check(&self) {
        #[cfg(debug_assertions)]
        if let Err(e) = self.node.check_snapshot() {
            panic!("{}: {e}", self.node.address());
        }
    }

    fn collect(&mut self) {
        while let Some(f) = self.node.poll_tap() {
            self.tap.push(f);
        }
        while let Some(e) = self.node.poll_event() {
            match &e {
                Event::ConfigReceived {
                    network,
                    controller_key,
                    config,
                } => {
                    let _ = member::apply_config(&mut self.node, *network, controller_key, config);
                }
                Event::ConfigRequested {
                    network, identity, ..
                } => {
                    if let Some(c) = &mut self.controller {
                        // Invariant: a simulated controller's in-memory store does not fail.
                        c.on_request(
                            &mut self.node,
                            self.now,
                            super::wall(self.now),
                            *network,
                            identity,
                        )
                        .expect("simulated controller answers");
                    }
                }
                _ => {}
            }
            self.events.push(e);
        }
    }
}

impl Host for NodeHost {
    fn handle_datagram(&mut self, now: Time, local: Endpoint, from: Endpoint, data: &[u8]) {
        self.now = now;
        self.node.handle_datagram(now, local, from, data);
        self.check();
        self.collect();
    }
    fn handle_timeout(&mut self, now: Time) {
        self.now = now;
        self.node.handle_timeout(now);
        self.check();
        self.collect();
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        // Commands issued through `Sim::with_host` may have produced events too.
        self.collect();
        self.node.poll_transmit()
    }
    fn poll_timeout(&self) -> Option<Time> {
        self.node.poll_timeout()
    }
}
