//! The rendered Nginx config, run by Debian's real nginx: `nginx -t` accepts it, and real
//! Matrix request URIs reach the right worker. Every upstream socket is a stub that answers
//! with its own name and the headers it received.

mod common;

use std::collections::BTreeSet;

use common::nginx::NginxBed;
use common::{inventory, root};

const ROOM: &str = "%21abc%3Aexample.org";
const ROOM_RAW: &str = "!abc:example.org";
const ROOM_V12: &str = "%21Hk2mXq9zPz0abcdefghijklmnopqrstuvwxyz01234";

#[test]
fn requests_reach_the_worker_that_serves_them() {
    let bed = NginxBed::start(&root().join("inventory/example.toml"));
    let expect = |worker: &str, requests: &[(&str, String)]| {
        for (method, uri) in requests {
            assert_eq!(bed.worker(method, uri), worker, "{method} {uri}");
        }
    };
    let c = "/_matrix/client/v3";
    expect(
        "client_sync1",
        &[
            (
                "PUT",
                format!("{c}/rooms/{ROOM}/typing/%40alice%3Aexample.org"),
            ),
            (
                "PUT",
                format!("{c}/rooms/{ROOM_V12}/typing/%40alice%3Aexample.org"),
            ),
            ("POST", format!("{c}/rooms/{ROOM}/receipt/m.read/%24event")),
            (
                "POST",
                format!("{c}/rooms/{ROOM_V12}/receipt/m.read/%24event"),
            ),
            ("POST", format!("{c}/rooms/{ROOM}/read_markers")),
            ("PUT", format!("{c}/sendToDevice/m.room.encrypted/txn1")),
            ("PUT", format!("{c}/presence/%40alice%3Aexample.org/status")),
            (
                "PUT",
                format!("{c}/user/%40alice%3Aexample.org/account_data/m.direct"),
            ),
            (
                "PUT",
                format!("{c}/user/%40alice%3Aexample.org/rooms/{ROOM}/account_data/m.fully_read"),
            ),
            (
                "PUT",
                format!("{c}/user/%40alice%3Aexample.org/rooms/{ROOM}/tags/m.favourite"),
            ),
            (
                "GET",
                format!("{c}/sync?since=s72594_4483_1934&timeout=30000"),
            ),
            ("GET", "/_matrix/client/r0/sync".to_string()),
            (
                "POST",
                "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync".to_string(),
            ),
            ("GET", format!("{c}/events?from=s1")),
            ("GET", format!("{c}/initialSync")),
            ("GET", format!("{c}/rooms/{ROOM}/initialSync")),
            ("POST", format!("{c}/user_directory/search")),
        ],
    );
    expect(
        "main",
        &[
            ("GET", format!("{c}/pushrules/")),
            ("PUT", format!("{c}/pushrules/global/override/my.rule")),
            ("POST", format!("{c}/rooms/{ROOM}/forget")),
            ("POST", format!("{c}/rooms/{ROOM_V12}/upgrade")),
            ("POST", format!("{c}/rooms/{ROOM}/report/%24event")),
            ("POST", format!("{c}/rooms/{ROOM}/report")),
            ("POST", format!("{c}/login")),
            ("GET", "/_matrix/client/versions".to_string()),
            ("POST", format!("{c}/register")),
            ("GET", format!("{c}/account/whoami")),
            ("POST", format!("{c}/account/3pid/add")),
            ("POST", format!("{c}/keys/query")),
            ("POST", format!("{c}/createRoom")),
            ("POST", format!("{c}/join/%23welcome-room%3Aexample.org")),
            ("GET", format!("{c}/profile/%40alice%3Aexample.org")),
            ("GET", format!("{c}/login/sso/redirect?redirectUrl=x")),
            (
                "GET",
                "/_matrix/federation/v1/openid/userinfo?access_token=x".to_string(),
            ),
            (
                "GET",
                "/_synapse/client/password_reset/email/submit_token?token=x".to_string(),
            ),
            ("GET", "/_synapse/client/oidc/callback".to_string()),
            (
                "GET",
                "/_synapse/admin/v1/users/%40alice%3Aexample.org/joined_rooms".to_string(),
            ),
            (
                "GET",
                "/_synapse/admin/v2/users/%40alice%3Aexample.org".to_string(),
            ),
            (
                "GET",
                "/_synapse/admin/v1/rooms/%21abc%3Aexample.org".to_string(),
            ),
        ],
    );
    expect(
        "media1",
        &[
            (
                "GET",
                "/_matrix/media/v3/download/example.org/abcdef".to_string(),
            ),
            (
                "GET",
                "/_matrix/media/r0/download/example.org/abcdef".to_string(),
            ),
            (
                "GET",
                "/_matrix/media/v3/thumbnail/example.org/abcdef?width=32&height=32".to_string(),
            ),
            (
                "POST",
                "/_matrix/media/v3/upload?filename=a.png".to_string(),
            ),
            ("POST", "/_matrix/media/v1/create".to_string()),
            ("GET", "/_matrix/media/v3/config".to_string()),
            (
                "GET",
                "/_matrix/media/v3/preview_url?url=https%3A%2F%2Fexample.org".to_string(),
            ),
            (
                "GET",
                "/_matrix/client/v1/media/download/example.org/abcdef".to_string(),
            ),
            (
                "GET",
                "/_matrix/client/v1/media/thumbnail/example.org/abcdef?width=32&height=32"
                    .to_string(),
            ),
            ("GET", "/_matrix/client/v1/media/config".to_string()),
            (
                "GET",
                "/_matrix/federation/v1/media/download/abcdef".to_string(),
            ),
            (
                "GET",
                "/_matrix/federation/v1/media/thumbnail/abcdef?width=32&height=32".to_string(),
            ),
            (
                "POST",
                "/_synapse/admin/v1/purge_media_cache?before_ts=1".to_string(),
            ),
            (
                "GET",
                "/_synapse/admin/v1/media/example.org/abcdef".to_string(),
            ),
            (
                "POST",
                "/_synapse/admin/v1/media/quarantine/example.org/abcdef".to_string(),
            ),
            (
                "POST",
                "/_synapse/admin/v1/media/unquarantine/example.org/abcdef".to_string(),
            ),
            (
                "POST",
                format!("/_synapse/admin/v1/quarantine_media/{ROOM}"),
            ),
            (
                "POST",
                format!("/_synapse/admin/v1/room/{ROOM}/media/quarantine"),
            ),
            ("GET", format!("/_synapse/admin/v1/room/{ROOM}/media")),
            (
                "POST",
                "/_synapse/admin/v1/user/%40alice%3Aexample.org/media/quarantine".to_string(),
            ),
            (
                "GET",
                "/_synapse/admin/v1/users/%40alice%3Aexample.org/media".to_string(),
            ),
        ],
    );
    expect(
        "federation_reader1",
        &[
            (
                "PUT",
                "/_matrix/federation/v1/send/1700000000000".to_string(),
            ),
            ("GET", "/_matrix/key/v2/server".to_string()),
            ("POST", "/_matrix/key/v2/query".to_string()),
            ("GET", "/_matrix/federation/v1/version".to_string()),
            (
                "GET",
                "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aexample.org".to_string(),
            ),
            ("GET", "/_matrix/federation/v1/event/%24event".to_string()),
            ("GET", "/_matrix/federation/v1/publicRooms".to_string()),
            ("POST", "/_matrix/federation/v1/user/keys/query".to_string()),
        ],
    );

    assert_eq!(
        bed.request("GET", "/health").status,
        200,
        "Nginx's own health endpoint"
    );
    assert_eq!(bed.request("GET", "/.well-known/matrix/client").status, 404);
    assert_eq!(bed.request("GET", "/_synapse/metrics").status, 404);
}

/// Every request about one room, client or federation, room ID encoded or not, query string
/// or not: the room workers it reaches.
fn workers_for_room(bed: &NginxBed, room: &str) -> BTreeSet<String> {
    let c = "/_matrix/client/v3";
    let f = "/_matrix/federation/v1";
    let requests = [
        ("GET", format!("{c}/rooms/{room}/messages?dir=b&limit=10")),
        (
            "GET",
            format!("{c}/rooms/{room}/messages?dir=b&filter=%7B%22lazy_load_members%22%3Atrue%7D"),
        ),
        ("PUT", format!("{c}/rooms/{room}/send/m.room.message/txn1")),
        ("GET", format!("{c}/rooms/{room}/state")),
        (
            "GET",
            format!("{c}/rooms/{room}/state/m.room.member/%40bob%3Aexample.org"),
        ),
        ("GET", format!("{c}/rooms/{room}/members")),
        ("GET", format!("{c}/rooms/{room}/joined_members")),
        ("GET", format!("{c}/rooms/{room}/context/%24event")),
        ("GET", format!("{c}/rooms/{room}/event/%24event")),
        ("PUT", format!("{c}/rooms/{room}/redact/%24event/txn2")),
        ("POST", format!("{c}/rooms/{room}/join")),
        ("POST", format!("{c}/rooms/{room}/invite")),
        ("POST", format!("{c}/rooms/{room}/leave")),
        ("POST", format!("{c}/join/{room}?server_name=example.org")),
        (
            "GET",
            format!("/_matrix/client/v1/rooms/{room}/relations/%24event"),
        ),
        ("GET", format!("/_matrix/client/v1/rooms/{room}/hierarchy")),
        ("GET", format!("{f}/state_ids/{room}?event_id=%24event")),
        ("GET", format!("{f}/state/{room}?event_id=%24event")),
        (
            "GET",
            format!("{f}/make_join/{room}/%40bob%3Aremote.org?ver=10"),
        ),
        (
            "PUT",
            format!("/_matrix/federation/v2/send_join/{room}/%24event"),
        ),
        ("GET", format!("{f}/backfill/{room}?v=%24event&limit=10")),
        ("POST", format!("{f}/get_missing_events/{room}")),
        (
            "PUT",
            format!("/_matrix/federation/v2/invite/{room}/%24event"),
        ),
    ];
    requests
        .iter()
        .map(|(method, uri)| bed.worker(method, uri))
        .collect()
}

#[test]
fn every_request_for_one_room_reaches_the_same_room_worker() {
    let bed = NginxBed::start(&root().join("inventory/example.toml"));
    for room in [ROOM, ROOM_RAW, ROOM_V12] {
        let workers = workers_for_room(&bed, room);
        assert_eq!(workers.len(), 1, "room {room} reached {workers:?}");
        assert!(
            workers.iter().next().unwrap().starts_with("rooms"),
            "{workers:?}"
        );
    }
    assert_eq!(
        workers_for_room(&bed, ROOM),
        workers_for_room(&bed, ROOM_RAW),
        "encoded and plain IDs hash alike"
    );

    // Different rooms spread over the room workers.
    let spread: BTreeSet<String> = (0..40)
        .map(|i| {
            bed.worker(
                "GET",
                &format!("/_matrix/client/v3/rooms/%21room{i}x%3Aexample.org/messages"),
            )
        })
        .collect();
    assert!(spread.len() >= 3, "40 rooms reached only {spread:?}");
    assert!(spread.iter().all(|w| w.starts_with("rooms")));
}

#[test]
fn the_admin_api_is_private_and_synapse_client_pages_public() {
    let (_dir, path) = inventory(
        "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"h\"\n[deployments.d.nginx]\nadmin_allow = [\"10.0.0.0/8\"]\n",
    );
    let bed = NginxBed::start(&path);
    for uri in [
        "/_synapse/admin/v1/users/%40alice%3Aexample.org/joined_rooms",
        "/_synapse/admin/v1/media/example.org/abc",
        "/_synapse/admin/v1/purge_media_cache",
    ] {
        assert_eq!(bed.request("GET", uri).status, 403, "{uri}");
    }
    assert_eq!(
        bed.worker("GET", "/_synapse/client/password_reset/email/submit_token"),
        "main"
    );
    assert_eq!(
        bed.worker("GET", "/_synapse/client/unsubscribe?access_token=x"),
        "main"
    );
}

#[test]
fn hundreds_of_room_workers_pass_nginx_t_and_share_the_rooms() {
    let (_dir, path) = inventory(
        "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"h\"\n[deployments.d.workers]\nrooms = 200\nclient_sync = 3\nmedia = 2\nfederation_reader = 2\n[deployments.d.postgres]\nmax_connections = 2000\n",
    );
    let bed = NginxBed::start(&path);
    let reached: BTreeSet<String> = (0..100)
        .map(|i| {
            bed.worker(
                "GET",
                &format!("/_matrix/client/v3/rooms/%21r{i}%3Aexample.org/members"),
            )
        })
        .collect();
    assert!(
        reached.len() > 30,
        "100 rooms reached only {} of 200 workers",
        reached.len()
    );
    assert_eq!(
        bed.worker(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{ROOM}/typing/%40a%3Aexample.org")
        ),
        "client_sync1",
        "one stream writer"
    );
}
