//! Tests of [`super`]: every message round-trips, and bad bytes are errors.
use super::*;
use proptest::prelude::*;
use std::net::SocketAddrV6;

fn addr(v: u64) -> NodeAddress {
    NodeAddress::new(v).expect("test address is valid")
}

fn network() -> NetworkId {
    NetworkId::new(addr(0x89e92ceee5), 7)
}

const FRAME: &[u8] = &[
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0,
];

/// One message per verb (and per OK body), with the length of its fixed part and
/// whether its last field takes the rest of the buffer.
fn arb_network() -> impl Strategy<Value = NetworkId> {
    (1u64..0xff_0000_0000, any::<u32>()).prop_map(|(c, n)| NetworkId::new(addr(c), n))
}

fn arb_group() -> impl Strategy<Value = MulticastGroup> {
    (any::<[u8; 6]>(), any::<u32>()).prop_map(|(mac, adi)| MulticastGroup { mac: Mac(mac), adi })
}

fn samples() -> Vec<(Message<'static>, usize, bool)> {
    let v4: Endpoint = "198.51.100.7/9993".parse().unwrap();
    let v6: Endpoint = "[2001:db8::1]:9994".parse().unwrap();
    let version = SoftwareVersion {
        major: 1,
        minor: 2,
        patch: 300,
    };
    vec![
        (
            Message::Hello(Hello {
                proto_version: 1,
                version,
                timestamp: Time::from_micros(123_456_789),
                world_id: 0x1122_3344_5566_7788,
                world_timestamp: 99,
            }),
            30,
            false,
        ),
        (
            Message::Error {
                in_re_verb: Verb::Whois,
                in_re_counter: 5,
                code: ErrorCode::ObjNotFound,
                payload: b"\x01\x02",
            },
            11,
            true,
        ),
        (
            Message::Error {
                in_re_verb: Verb::Unknown(0x55),
                in_re_counter: 5,
                code: ErrorCode::Unknown(200),
                payload: b"",
            },
            11,
            true,
        ),
        (
            Message::Ok {
                in_re_counter: 77,
                body: OkBody::Hello(HelloOk {
                    timestamp: Time::from_micros(123_456_789),
                    proto_version: 1,
                    version,
                    observed: v4,
                }),
            },
            10 + 13 + 7,
            false,
        ),
        (
            Message::Ok {
                in_re_counter: 77,
                body: OkBody::Hello(HelloOk {
                    timestamp: Time::ZERO,
                    proto_version: 1,
                    version,
                    observed: v6,
                }),
            },
            10 + 13 + 19,
            false,
        ),
        (
            Message::Ok {
                in_re_counter: 78,
                body: OkBody::Whois(vec![[3; IDENTITY_LEN], [4; IDENTITY_LEN]]),
            },
            10 + 1 + 2 * IDENTITY_LEN,
            false,
        ),
        (
            Message::Ok {
                in_re_counter: 79,
                body: OkBody::Echo(b"ping"),
            },
            10,
            true,
        ),
        (
            Message::Ok {
                in_re_counter: 80,
                body: OkBody::Other {
                    in_re_verb: Verb::NetworkConfigRequest,
                    body: b"config",
                },
            },
            10,
            true,
        ),
        (
            Message::Whois {
                addresses: vec![addr(1), addr(0x12_3456_789a)],
            },
            1 + 1 + 10,
            false,
        ),
        (
            Message::Rendezvous {
                peer: addr(0x0102030405),
                endpoints: vec![v4, v6],
            },
            1 + 5 + 1 + 7 + 19,
            false,
        ),
        (
            Message::Frame {
                network: network(),
                flags: 0,
                frame: FRAME,
            },
            FRAME_HEADER_LEN + ETHERNET_HEADER_LEN,
            true,
        ),
        (Message::Echo(b"hello"), 1, true),
        (
            Message::MulticastLike {
                subscriptions: vec![
                    (network(), MulticastGroup::BROADCAST),
                    (
                        network(),
                        MulticastGroup::arp("198.18.0.9".parse().unwrap()),
                    ),
                ],
            },
            1 + 1 + 2 * SUBSCRIPTION_LEN,
            false,
        ),
        (
            Message::NetworkCredentials {
                network: network(),
                flags: CREDENTIALS_ASK,
                credential: b"credential bytes",
            },
            10,
            true,
        ),
        (
            Message::MulticastGather {
                network: network(),
                group: MulticastGroup::solicited_node("fd00::1:2:3".parse().unwrap()),
                limit: 32,
            },
            1 + 8 + 10 + 2,
            false,
        ),
        (
            Message::Ok {
                in_re_counter: 81,
                body: OkBody::Gather(Gathered {
                    network: network(),
                    group: MulticastGroup::BROADCAST,
                    total: 7,
                    members: vec![addr(3), addr(4)],
                }),
            },
            10 + 8 + 10 + 4 + 2 + 10,
            false,
        ),
        (
            Message::NetworkConfigRequest {
                network: "8056c2e21c000001".parse().unwrap(),
                revision: 9,
            },
            17,
            false,
        ),
        (
            Message::NetworkConfig {
                network: "8056c2e21c000001".parse().unwrap(),
                config: b"signed config",
            },
            9,
            true,
        ),
        (
            Message::PushDirectPaths {
                endpoints: vec![v4, v6],
            },
            1 + 1 + 7 + 19,
            false,
        ),
        (
            Message::PushDirectPaths {
                endpoints: Vec::new(),
            },
            2,
            false,
        ),
        (
            Message::WorldRequest {
                worlds: vec![(7, 1_700_000_000_000), (0x8a1b2c3d4e, 0)],
            },
            1 + 1 + 32,
            false,
        ),
        (
            Message::Ok {
                in_re_counter: 5,
                body: OkBody::World(b"signed world"),
            },
            1 + 1 + 8,
            true,
        ),
        (
            Message::Unknown {
                verb: Verb::MulticastFrame,
                body: b"reserved",
            },
            1,
            true,
        ),
        (
            Message::Unknown {
                verb: Verb::Unknown(0xee),
                body: b"",
            },
            1,
            true,
        ),
    ]
}

fn emit(m: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    m.emit(&mut out);
    out
}

#[test]
fn every_verb_round_trips() {
    for (message, fixed, _) in samples() {
        let out = emit(&message);
        assert_eq!(out.len(), message.buffer_len(), "{message:?}");
        assert_eq!(out[0], u8::from(message.verb()));
        assert_eq!(Message::parse(&out), Ok(message.clone()));
        assert!(out.len() >= fixed);
    }
}

#[test]
fn truncations_are_errors_and_never_panic() {
    for (message, fixed, rest_field) in samples() {
        let out = emit(&message);
        for len in 0..out.len() {
            let result = Message::parse(&out[..len]);
            if len < fixed || !rest_field {
                assert!(
                    result.is_err(),
                    "{message:?} cut to {len} parsed: {result:?}"
                );
            }
        }
    }
}

#[test]
fn hello_layout_matches_the_spec() {
    let hello = Message::Hello(Hello {
        proto_version: 1,
        version: SoftwareVersion {
            major: 2,
            minor: 3,
            patch: 0x0405,
        },
        timestamp: Time::from_micros(0x0607),
        world_id: 0x08,
        world_timestamp: 0x09,
    });
    let mut expected = vec![0x01, 1, 2, 3, 4, 5];
    expected.extend_from_slice(&0x0607u64.to_be_bytes());
    expected.extend_from_slice(&8u64.to_be_bytes());
    expected.extend_from_slice(&9u64.to_be_bytes());
    assert_eq!(emit(&hello), expected);
}

#[test]
fn endpoints_encode_family_ip_port() {
    let mut out = Vec::new();
    let v4: Endpoint = "198.51.100.7/9993".parse().unwrap();
    emit_endpoint(&v4, &mut out);
    assert_eq!(out, [4, 198, 51, 100, 7, 0x27, 0x09]);
    assert_eq!(parse_endpoint(&out), Ok((v4, 7)));
    out[0] = 5;
    assert_eq!(parse_endpoint(&out), Err(WireError::BadEndpointFamily(5)));
    let v6: Endpoint = "[2001:db8::1]:1".parse().unwrap();
    out.clear();
    emit_endpoint(&v6, &mut out);
    out.push(0xaa);
    assert_eq!(out.len(), endpoint_len(&v6) + 1);
    assert_eq!(parse_endpoint(&out), Ok((v6, 19)));
}

#[test]
fn invalid_contents_are_rejected() {
    let mut whois = emit(&Message::Whois {
        addresses: vec![addr(1)],
    });
    whois[2..7].fill(0);
    assert_eq!(
        Message::parse(&whois),
        Err(WireError::ReservedAddress("Whois address"))
    );

    let mut frame = emit(&Message::Frame {
        network: network(),
        flags: 0,
        frame: FRAME,
    });
    frame[1..9].fill(0);
    assert_eq!(Message::parse(&frame), Err(WireError::BadNetworkId));

    let long = [0u8; ECHO_MAX_LEN + 1];
    let mut echo = vec![u8::from(Verb::Echo)];
    echo.extend_from_slice(&long);
    assert!(matches!(
        Message::parse(&echo),
        Err(WireError::BadLength(_))
    ));
    assert_eq!(
        Message::parse(&echo[..=ECHO_MAX_LEN]),
        Ok(Message::Echo(&long[..ECHO_MAX_LEN]))
    );

    assert_eq!(
        Message::parse(&[]),
        Err(WireError::Truncated("message verb"))
    );
}

#[test]
fn trailing_bytes_after_fixed_layouts_are_ignored() {
    let (hello, _, _) = samples().remove(0);
    let mut out = emit(&hello);
    out.extend_from_slice(b"future field");
    assert_eq!(Message::parse(&out), Ok(hello));
}

#[test]
fn reserved_and_unknown_verbs_keep_their_body() {
    for n in (0x08..=0xffu8).filter(|n| !matches!(n, 0x08..=0x0b | 0x0d..=0x10)) {
        let out = [n, 1, 2, 3];
        let message = Message::parse(&out).unwrap();
        assert_eq!(
            message,
            Message::Unknown {
                verb: Verb::from(n),
                body: &[1, 2, 3]
            }
        );
        assert_eq!(emit(&message), out);
    }
    assert!(matches!(
        Message::parse(&[0]),
        Ok(Message::Unknown {
            verb: Verb::Unknown(0),
            ..
        })
    ));
}

#[test]
fn verb_and_code_numbers_round_trip() {
    for n in 0..=255u8 {
        assert_eq!(u8::from(Verb::from(n)), n);
        assert_eq!(u8::from(ErrorCode::from(n)), n);
    }
    assert_eq!(Verb::from(0x0c), Verb::MulticastFrame);
    assert_eq!(ErrorCode::from(7), ErrorCode::NetworkAccessDenied);
}

#[test]
fn pushed_paths_are_bounded_and_checked() {
    let v4: Endpoint = "192.0.2.10/9993".parse().unwrap();
    let full = Message::PushDirectPaths {
        endpoints: vec![v4; MAX_PUSHED_PATHS],
    };
    let mut out = emit(&full);
    assert_eq!(&out[..2], &[0x0d, 8]);
    assert_eq!(out.len(), 2 + 8 * 7);
    assert_eq!(Message::parse(&out), Ok(full));
    // A ninth endpoint is refused, even when its bytes are there.
    out[1] = 9;
    out.extend_from_within(2..9);
    assert_eq!(
        Message::parse(&out),
        Err(WireError::BadLength(
            "PushDirectPaths carries more than 8 endpoints"
        ))
    );
    // A count that promises more than the body holds, and a bad family.
    assert_eq!(
        Message::parse(&[0x0d, 2, 4, 192, 0, 2, 10, 0x27, 0x09]),
        Err(WireError::Truncated("PushDirectPaths endpoint"))
    );
    assert_eq!(
        Message::parse(&[0x0d, 1, 5, 192, 0, 2, 10, 0x27, 0x09]),
        Err(WireError::BadEndpointFamily(5))
    );
    assert_eq!(
        Message::parse(&[0x0d]),
        Err(WireError::Truncated("PushDirectPaths count"))
    );
}

#[test]
fn frame_header_helper_matches_emit() {
    let mut out = Vec::new();
    emit_frame_header(network(), 0, &mut out);
    assert_eq!(out.len(), FRAME_HEADER_LEN);
    out.extend_from_slice(FRAME);
    let message = Message::Frame {
        network: network(),
        flags: 0,
        frame: FRAME,
    };
    assert_eq!(out, emit(&message));
}

fn arb_addr() -> impl Strategy<Value = NodeAddress> {
    (1u64..0xff_0000_0000).prop_map(addr)
}

fn arb_endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| Endpoint(SocketAddr::new(Ipv4Addr::from(ip).into(), port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| Endpoint(SocketAddr::V6(
            SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)
        ))),
    ]
}

fn arb_version() -> impl Strategy<Value = SoftwareVersion> {
    any::<(u8, u8, u16)>().prop_map(|(major, minor, patch)| SoftwareVersion {
        major,
        minor,
        patch,
    })
}

/// Byte payloads for generated messages. Proptest values must own their data and
/// messages borrow, so the bytes are leaked: at most a few KB per test case.
fn arb_bytes(range: std::ops::Range<usize>) -> impl Strategy<Value = &'static [u8]> {
    proptest::collection::vec(any::<u8>(), range).prop_map(|v| &*v.leak())
}

fn arb_message() -> impl Strategy<Value = Message<'static>> {
    prop_oneof![
        (any::<u8>(), arb_version(), any::<(u64, u64, u64)>()).prop_map(
            |(proto_version, version, (t, world_id, world_timestamp))| {
                Message::Hello(Hello {
                    proto_version,
                    version,
                    timestamp: Time::from_micros(t),
                    world_id,
                    world_timestamp,
                })
            }
        ),
        (any::<u8>(), any::<u64>(), any::<u8>(), arb_bytes(0..64)).prop_map(
            |(v, c, code, payload)| Message::Error {
                in_re_verb: Verb::from(v),
                in_re_counter: c,
                code: ErrorCode::from(code),
                payload,
            }
        ),
        (
            any::<u64>(),
            any::<u8>(),
            arb_version(),
            arb_endpoint(),
            any::<u64>()
        )
            .prop_map(|(c, proto_version, version, observed, t)| Message::Ok {
                in_re_counter: c,
                body: OkBody::Hello(HelloOk {
                    timestamp: Time::from_micros(t),
                    proto_version,
                    version,
                    observed,
                }),
            }),
        (
            any::<u64>(),
            proptest::collection::vec(any::<[u8; IDENTITY_LEN]>(), 0..4)
        )
            .prop_map(|(c, ids)| Message::Ok {
                in_re_counter: c,
                body: OkBody::Whois(ids),
            }),
        (any::<u64>(), arb_bytes(0..ECHO_MAX_LEN + 1)).prop_map(|(c, echo)| Message::Ok {
            in_re_counter: c,
            body: OkBody::Echo(echo),
        }),
        (any::<u64>(), any::<u32>()).prop_map(|(c, token)| Message::Ok {
            in_re_counter: c,
            body: OkBody::PathProbe { token },
        }),
        (any::<u64>(), arb_bytes(0..600)).prop_map(|(c, world)| Message::Ok {
            in_re_counter: c,
            body: OkBody::World(world),
        }),
        (any::<u64>(), 0x08u8.., arb_bytes(0..64))
            .prop_filter("0x0e, 0x0f and 0x10 have typed answers", |(_, v, _)| {
                !matches!(v, 0x0e..=0x10)
            })
            .prop_map(|(c, v, body)| Message::Ok {
                in_re_counter: c,
                body: OkBody::Other {
                    in_re_verb: Verb::from(v),
                    body,
                },
            }),
        proptest::collection::vec(arb_addr(), 0..MAX_LIST_LEN + 1)
            .prop_map(|addresses| Message::Whois { addresses }),
        (arb_addr(), proptest::collection::vec(arb_endpoint(), 0..20))
            .prop_map(|(peer, endpoints)| Message::Rendezvous { peer, endpoints }),
        (
            1u64..0xff_0000_0000,
            any::<u32>(),
            any::<u8>(),
            arb_bytes(ETHERNET_HEADER_LEN..1500)
        )
            .prop_map(|(c, n, flags, frame)| Message::Frame {
                network: NetworkId::new(addr(c), n),
                flags,
                frame,
            }),
        arb_bytes(0..ECHO_MAX_LEN + 1).prop_map(Message::Echo),
        proptest::collection::vec(arb_endpoint(), 0..MAX_PUSHED_PATHS + 1)
            .prop_map(|endpoints| Message::PushDirectPaths { endpoints }),
        (any::<u32>(), 0usize..1500)
            .prop_map(|(token, padding)| Message::PathProbe { token, padding }),
        proptest::collection::vec(any::<(u64, u64)>(), 0..MAX_WORLDS_ASKED + 1)
            .prop_map(|worlds| Message::WorldRequest { worlds }),
        proptest::collection::vec((arb_network(), arb_group()), 0..20)
            .prop_map(|subscriptions| Message::MulticastLike { subscriptions }),
        (arb_network(), any::<u8>(), arb_bytes(0..300)).prop_map(|(network, flags, credential)| {
            Message::NetworkCredentials {
                network,
                flags,
                credential,
            }
        }),
        (arb_network(), arb_group(), any::<u16>()).prop_map(|(network, group, limit)| {
            Message::MulticastGather {
                network,
                group,
                limit,
            }
        }),
        (
            any::<u64>(),
            arb_network(),
            arb_group(),
            any::<u32>(),
            proptest::collection::vec(arb_addr(), 0..40)
        )
            .prop_map(|(c, network, group, total, members)| Message::Ok {
                in_re_counter: c,
                body: OkBody::Gather(Gathered {
                    network,
                    group,
                    total,
                    members,
                }),
            }),
        (0x08u8.., arb_bytes(0..64))
            .prop_filter("0x08 to 0x0b and 0x0d to 0x10 are known verbs", |(v, _)| {
                !matches!(v, 0x08..=0x0b | 0x0d..=0x10)
            })
            .prop_map(|(v, body)| Message::Unknown {
                verb: Verb::from(v),
                body,
            }),
    ]
}

proptest! {
    #[test]
    fn prop_round_trip(message in arb_message()) {
        let out = emit(&message);
        prop_assert_eq!(out.len(), message.buffer_len());
        prop_assert_eq!(Message::parse(&out), Ok(message));
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(message) = Message::parse(&bytes) {
            // Whatever parses re-emits to something that parses to the same value.
            let out = emit(&message);
            prop_assert_eq!(Message::parse(&out), Ok(message));
        }
    }
}
