//! The node's *inside*: a Linux TAP device carrying whole Ethernet frames, read and
//! written asynchronously on tokio (via `tun-rs`).
//!
//! Contract:
//! - [`Tap::create`] makes a non-persistent TAP in the **calling thread's** network
//!   namespace, sets its MTU and MAC, and brings it up. Its name and index are read once
//!   there and cached, because name↔index lookups depend on the namespace of the thread
//!   asking. It must be called inside a tokio runtime (the fd is registered with it).
//! - The device is opened with `IFF_VNET_HDR` and offers the host checksum offload and
//!   TCP segmentation (`TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`, never UDP segmentation):
//!   every message read or written is a [`virtio_net_hdr`](super::offload::VnetHdr)
//!   followed by a frame `dst MAC | src MAC | ethertype | payload`, which may be up to
//!   64 KiB for TCP. [`Tap::try_read_message`]/[`Tap::try_write_message`] move such
//!   messages for the driver, which uses [`super::offload`] around them;
//!   [`Tap::recv`]/[`Tap::send`] move one plain frame (header handled here) for tests
//!   and tools.
//! - With [`Queues::Many`] the device is multi-queue (`IFF_MULTI_QUEUE`): [`Tap::queue`]
//!   opens another queue of it, a `Tap` of its own for another thread's runtime; the
//!   host hands each flow's frames to one queue.
//! - Dropping the `Tap` closes the fd; when the last queue of a device is closed, the
//!   kernel deletes the device (with its addresses and routes).
//! - Addresses and routes are not set here: that is [`crate::io::netconf`]'s job (tun-rs'
//!   address management is compiled out).
//!
//! Callers: the node driver (one owner, which reads with `poll_readable`/`try_recv` and
//! writes with `try_send` on its packet thread, and reads once with `read_message_now` right
//! after writing), and the namespace tests.

use std::io;
use std::task::{Context, Poll};

use std::os::fd::AsRawFd;

use tun_rs::{AsyncDevice, DeviceBuilder, Layer};

use super::offload;

use crate::types::Mac;

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
pub const MAX_NAME_LEN: usize = 15;
/// The smallest MTU Linux accepts on an Ethernet-like device that carries IPv4.
pub const MIN_MTU: u16 = 68;

/// Why a TAP device could not be created or configured.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The interface name is not usable.
    #[error("bad TAP interface name {name:?}: {reason}")]
    BadName {
        /// The rejected name.
        name: String,
        /// What a valid name looks like.
        reason: &'static str,
    },
    /// The MAC is a multicast/broadcast or all-zero address, which an interface cannot own.
    #[error("MAC {0} cannot be a TAP's own address: it must be unicast and not all zero")]
    BadMac(Mac),
    /// The MTU is below what IPv4 needs.
    #[error("MTU {0} is too small for a TAP device (at least {MIN_MTU})")]
    BadMtu(u16),
    /// Not inside a tokio runtime.
    #[error("Tap::create must be called from inside a tokio runtime")]
    NoRuntime,
    /// A step of creating or configuring the device failed.
    #[error("{op} for TAP device {name}: {source}{hint}")]
    Os {
        /// What was being done.
        op: &'static str,
        /// The interface name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
        /// What to check (may be empty).
        hint: &'static str,
    },
}

/// How many queues a TAP device may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queues {
    /// One: the `Tap` that created it.
    One,
    /// As many as [`Tap::queue`] opens (`IFF_MULTI_QUEUE`).
    Many,
}

/// A TAP device (or one queue of it): Ethernet frames in and out of the host's network
/// stack.
pub struct Tap {
    dev: AsyncDevice,
    /// Cached at creation (see module docs).
    name: String,
    /// Cached at creation (see module docs).
    index: u32,
    mac: Mac,
    mtu: u16,
}

impl Tap {
    /// Creates the TAP `name` in the calling thread's namespace with the given MTU and MAC,
    /// and brings it up. Needs `CAP_NET_ADMIN` and `/dev/net/tun`.
    pub fn create(name: &str, mtu: u16, mac: Mac, queues: Queues) -> Result<Tap, TapError> {
        check_name(name)?;
        if mtu < MIN_MTU {
            return Err(TapError::BadMtu(mtu));
        }
        if mac.0[0] & 1 == 1 || mac.0 == [0; 6] {
            return Err(TapError::BadMac(mac));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TapError::NoRuntime);
        }
        let os = |op, hint| {
            let name = name.to_string();
            move |source| TapError::Os {
                op,
                name,
                source,
                hint,
            }
        };
        let dev = DeviceBuilder::new()
            .name(name)
            .layer(Layer::L2)
            .offload(true)
            .multi_queue(queues == Queues::Many)
            .enable(false)
            .build_sync()
            .map_err(os(
                "opening /dev/net/tun and creating the device",
                "; needs root or CAP_NET_ADMIN, and the name must not belong to another device",
            ))?;
        set_offloads(dev.as_raw_fd()).map_err(os("choosing the TAP offloads", ""))?;
        dev.set_mtu(mtu).map_err(os("setting the MTU", ""))?;
        dev.set_mac_address(mac.0)
            .map_err(os("setting the MAC address", ""))?;
        dev.enabled(true)
            .map_err(os("bringing the device up", ""))?;
        let actual = dev.name().map_err(os("reading the device name", ""))?;
        let index = dev
            .if_index()
            .map_err(os("reading the interface index", ""))?;
        let dev = AsyncDevice::new(dev).map_err(os("registering the fd with tokio", ""))?;
        Ok(Tap {
            dev,
            name: actual,
            index,
            mac,
            mtu,
        })
    }

    /// Opens another queue of this device, registered with the **calling thread's**
    /// runtime, with the same offloads. Only for a device created with [`Queues::Many`].
    pub fn queue(&self) -> Result<Tap, TapError> {
        let os = |op| {
            let name = self.name.clone();
            move |source| TapError::Os {
                op,
                name,
                source,
                hint: "",
            }
        };
        let dev = self.dev.try_clone().map_err(os("opening another queue"))?;
        set_offloads(dev.as_raw_fd()).map_err(os("choosing the TAP offloads"))?;
        Ok(Tap {
            dev,
            name: self.name.clone(),
            index: self.index,
            mac: self.mac,
            mtu: self.mtu,
        })
    }

    /// Reads one Ethernet frame into `buf` and returns its length, with checksums the
    /// kernel left open completed; a TCP segmentation frame comes back whole. `buf`
    /// should hold 64 KiB; a longer message is truncated by the kernel.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.dev.readable().await?;
            match self.try_read_message(buf) {
                Ok(n) => return plain_frame(buf, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes one Ethernet frame (as if it arrived on the wire). Frames shorter than an
    /// Ethernet header are refused with `InvalidInput`.
    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        check_frame(frame)?;
        let mut message = offload::PLAIN.to_vec();
        message.extend_from_slice(frame);
        let n = self.dev.send(&message).await?;
        self.check_written(n, &message)
    }

    /// Reads one message (virtio header and frame) if one is ready; `WouldBlock` when
    /// none is (the readiness [`poll_readable`](Self::poll_readable) reported is then
    /// cleared). `buf` should hold [`MESSAGE_LEN`] bytes.
    pub fn try_read_message(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.dev.try_recv(buf)
    }

    /// Reads one message at once, without asking the runtime whether one is ready:
    /// for what the host queued while this thread was writing to the device (a reply or
    /// an ACK the kernel produced before the write returned, of which the runtime has not
    /// heard yet). `WouldBlock` when none is; the runtime's readiness is left as it was.
    pub fn read_message_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the fd is open while `self` lives, and `buf` is valid for its length.
        let n = unsafe { libc::read(self.dev.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Ready when a message may be waiting.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.dev.poll_readable(cx)
    }

    /// Writes one message (virtio header and frame) without waiting: `WouldBlock` when
    /// the device's queue is full (the caller drops it, as a full switch port would).
    pub fn try_write_message(&self, message: &[u8]) -> io::Result<()> {
        if message.len() < offload::VNET_HDR_LEN + 14 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a message shorter than its header and an Ethernet header",
            ));
        }
        let n = self.dev.try_send(message)?;
        self.check_written(n, message)
    }

    fn check_written(&self, n: usize, message: &[u8]) -> io::Result<()> {
        if n != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("TAP {} took {n} of {} bytes", self.name, message.len()),
            ));
        }
        Ok(())
    }

    /// The interface name (as the kernel reports it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index in the namespace the TAP was created in (for netlink).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The MAC address set at creation.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// The MTU set at creation.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("name", &self.name)
            .field("index", &self.index)
            .field("mac", &self.mac)
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

/// The largest message a read returns: the header and a 64 KiB segmentation frame.
pub const MESSAGE_LEN: usize = offload::VNET_HDR_LEN + 14 + 65_535;

/// Turns the message in `buf[..n]` into the plain frame at the start of `buf`.
fn plain_frame(buf: &mut [u8], n: usize) -> io::Result<usize> {
    let bad = |e: offload::OffloadError| io::Error::new(io::ErrorKind::InvalidData, e);
    let hdr =
        offload::VnetHdr::parse(&buf[..n]).ok_or_else(|| bad(offload::OffloadError::Truncated))?;
    if hdr.flags & offload::F_NEEDS_CSUM != 0 && hdr.gso_type == offload::GSO_NONE {
        // Completing the checksum is what split_read does for a single frame.
        let mut len = 0;
        offload::split_read(&mut buf[..n], &mut Vec::new(), 0, |f| len = f.len()).map_err(bad)?;
    }
    buf.copy_within(offload::VNET_HDR_LEN..n, 0);
    Ok(n - offload::VNET_HDR_LEN)
}

/// Offers the host checksum offload and TCP segmentation, and nothing else (tun-rs also
/// asks for UDP segmentation where the kernel has it, which the driver does not cut).
fn set_offloads(fd: std::os::fd::RawFd) -> io::Result<()> {
    let flags = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
    // SAFETY: `fd` is the open TAP descriptor; TUNSETOFFLOAD takes the flags by value.
    let r = unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, flags as libc::c_ulong) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn check_frame(frame: &[u8]) -> io::Result<()> {
    if frame.len() < 14 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a {}-byte frame is shorter than an Ethernet header",
                frame.len()
            ),
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), TapError> {
    let reason = if name.is_empty() || name.len() > MAX_NAME_LEN {
        "it must be 1 to 15 bytes long"
    } else if name == "." || name == ".." {
        "'.' and '..' are not interface names"
    } else if name.contains(['/', ':', '%'])
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        "it must not contain '/', ':', '%', whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(TapError::BadName {
        name: name.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{Lab, require_root, run_in};

    const MAC: Mac = Mac([0x02, 0x5a, 0x00, 0x00, 0x00, 0x01]);

    #[test]
    fn bad_names_macs_and_mtus_are_refused_before_touching_the_kernel() {
        for bad in ["", "sixteen-chars-xx", "a/b", "a b", "tap%d", "..", "a:1"] {
            assert!(
                matches!(check_name(bad), Err(TapError::BadName { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(check_name("sky0").is_ok());
        assert!(check_name("fifteen-chars-x").is_ok());
        assert!(matches!(
            Tap::create("sky0", 1400, Mac::BROADCAST, Queues::One),
            Err(TapError::BadMac(_))
        ));
        assert!(matches!(
            Tap::create("sky0", 1400, Mac([0; 6]), Queues::One),
            Err(TapError::BadMac(_))
        ));
        assert!(matches!(
            Tap::create("sky0", 40, MAC, Queues::One),
            Err(TapError::BadMtu(40))
        ));
        // No runtime on this thread.
        assert!(matches!(
            Tap::create("sky0", 1400, MAC, Queues::One),
            Err(TapError::NoRuntime)
        ));
    }

    /// Creates a TAP inside a lab namespace, checks what the kernel sees, and that the
    /// device disappears when dropped.
    #[test]
    fn tap_is_created_configured_and_removed_on_drop() {
        if !require_root("io::tap::tap_is_created_configured_and_removed_on_drop") {
            return;
        }
        let lab = Lab::new("tap").unwrap();
        let host = lab
            .add_public_host("a", "198.51.100.31".parse().unwrap())
            .unwrap();
        let shown = run_in(&host.netns, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let tap = Tap::create("sky0", 1380, MAC, Queues::One).unwrap();
                assert_eq!(tap.name(), "sky0");
                assert!(tap.index() > 0);
                let out = std::process::Command::new("ip")
                    .args(["-o", "link", "show", "dev", "sky0"])
                    .output()
                    .unwrap();
                let shown = String::from_utf8_lossy(&out.stdout).into_owned();
                // A second device with the same name is refused with a clear error.
                let err = Tap::create("sky0", 1380, MAC, Queues::One).unwrap_err();
                assert!(err.to_string().contains("sky0"), "{err}");
                drop(tap);
                let gone = std::process::Command::new("ip")
                    .args(["link", "show", "dev", "sky0"])
                    .output()
                    .unwrap();
                assert!(!gone.status.success(), "sky0 still exists after drop");
                shown
            })
        })
        .unwrap();
        assert!(shown.contains("mtu 1380"), "{shown}");
        assert!(shown.contains("02:5a:00:00:00:01"), "{shown}");
        assert!(shown.contains(",UP"), "{shown}");
    }
}
