//! The protocol cores as simulator hosts: [`Root`] directly, and the node core through
//! [`NodeHost`], which also collects what a real driver would consume (events and TAP
//! frames) so scenario tests can assert on them.

use super::Host;
use crate::moon::root::Root;
use crate::switch::{Event, Node, TapFrame};
use crate::types::{Endpoint, Time, Transmit};

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
}

impl NodeHost {
    /// Wraps a node.
    pub fn new(node: Node) -> Self {
        Self {
            node,
            events: Vec::new(),
            tap: Vec::new(),
        }
    }

    fn collect(&mut self) {
        while let Some(f) = self.node.poll_tap() {
            self.tap.push(f);
        }
        while let Some(e) = self.node.poll_event() {
            self.events.push(e);
        }
    }
}

impl Host for NodeHost {
    fn handle_datagram(&mut self, now: Time, local: Endpoint, from: Endpoint, data: &[u8]) {
        self.node.handle_datagram(now, local, from, data);
        self.collect();
    }
    fn handle_timeout(&mut self, now: Time) {
        self.node.handle_timeout(now);
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
