//! Nginx routing: which worker pool each request goes to, as data the templates loop over.
//!
//! The order is GUIDE-SPEC §12 point 8: main-only overrides, media, stream writers, sync,
//! the room-ID hash, the federation reader, then main. Requests naming a room are hashed by
//! the room ID path segment alone, so every request for one room reaches the same room
//! worker, whether the ID has a `:server` part (room versions up to 11) or not (version 12).

use serde::Serialize;

use crate::inventory::WorkerKind;
use crate::topology::{Endpoint, Process, Topology};

/// Client API versions in paths (`/_matrix/client/v3/...`).
const CLIENT: &str = "^/_matrix/client/(?:api/v1|r0|v3|unstable)";

/// Federation endpoints whose path carries a room ID right after the endpoint name.
const FEDERATION_ROOM_ENDPOINTS: &str = "state|state_ids|get_missing_events|backfill|make_join|send_join|make_leave|send_leave|make_knock|send_knock|invite|event_auth|timestamp_to_event|exchange_third_party_invite";

/// Where a request naming a room has its room ID: the named capture `room_id` is the hash
/// key (nginx's `$uri` is decoded, so `%21` and `%3A` are already `!` and `:`).
pub fn room_patterns() -> Vec<String> {
    vec![
        "^/_matrix/client/(?:api/v1|[^/]+)/(?:rooms|join|knock)/(?<room_id>![^/]+)".to_string(),
        format!("^/_matrix/federation/v[12]/(?:{FEDERATION_ROOM_ENDPOINTS})/(?<room_id>![^/]+)"),
    ]
}

#[derive(Debug, Serialize)]
pub struct Upstream {
    pub name: &'static str,
    pub comment: &'static str,
    /// Balancing directive, when the pool has more than one server (or hashes by room).
    pub balance: Option<&'static str>,
    pub servers: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Route {
    pub comment: &'static str,
    /// `~ REGEX` or a prefix.
    pub matcher: String,
    pub upstream: &'static str,
    /// Only the addresses of `private.conf` may reach it.
    pub private: bool,
}

pub const MAIN: &str = "synapse_main";
pub const STREAM_WRITER: &str = "synapse_stream_writer";
pub const CLIENT_SYNC: &str = "synapse_client_sync";
pub const ROOMS: &str = "synapse_rooms";
pub const FEDERATION_READER: &str = "synapse_federation_reader";
pub const MEDIA: &str = "synapse_media";

fn server(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Unix { path } => format!("unix:{path}"),
        Endpoint::Tcp { address, port } if address.contains(':') => format!("[{address}]:{port}"),
        Endpoint::Tcp { address, port } => format!("{address}:{port}"),
    }
}

fn servers<'a>(processes: impl Iterator<Item = &'a Process>) -> Vec<String> {
    processes
        .filter_map(|p| p.inbound.as_ref())
        .map(server)
        .collect()
}

/// One upstream per role.
pub fn upstreams(topology: &Topology) -> Vec<Upstream> {
    let pool = |name, comment, kind, balance| {
        let servers = servers(topology.workers(kind));
        let balance = if servers.len() > 1 {
            Some(balance)
        } else {
            None
        };
        Upstream {
            name,
            comment,
            balance,
            servers,
        }
    };
    vec![
        Upstream {
            name: MAIN,
            comment: "The main process.",
            balance: None,
            servers: servers(std::iter::once(topology.main())),
        },
        Upstream {
            name: STREAM_WRITER,
            comment: "The writer of typing, receipts, account data, to-device and presence.",
            balance: None,
            servers: servers(std::iter::once(topology.stream_writer())),
        },
        pool(
            CLIENT_SYNC,
            "Sync workers: one user stays on one worker.",
            WorkerKind::ClientSync,
            "hash $mxid_localpart consistent",
        ),
        Upstream {
            name: ROOMS,
            comment: "Room workers: one room stays on one worker; adding a worker moves about 1/N of the rooms.",
            balance: Some("hash $matrix_room_id consistent"),
            servers: servers(topology.workers(WorkerKind::Rooms)),
        },
        pool(
            FEDERATION_READER,
            "Federation readers: one remote server stays on one reader.",
            WorkerKind::FederationReader,
            "ip_hash",
        ),
        pool(
            MEDIA,
            "Media repository workers.",
            WorkerKind::Media,
            "least_conn",
        ),
    ]
}

fn regex(comment: &'static str, pattern: String, upstream: &'static str) -> Route {
    Route {
        comment,
        matcher: format!("~ \"{pattern}\""),
        upstream,
        private: false,
    }
}

/// Every location, in the order nginx must try them.
pub fn routes() -> Vec<Route> {
    let [client_room, federation_room] = room_patterns().try_into().expect("two room patterns");
    let without_capture = |p: String| p.replace("(?<room_id>", "(?:");
    let mut routes = vec![
        regex(
            "Main only: push rules (the push_rules writer), 3PIDs, room directory visibility, forget, upgrade and report of a room, SSO redirect, registration.",
            format!("{CLIENT}/(?:account/3pid/|directory/list/room/|pushrules/|rooms/[^/]+/(?:forget|upgrade|report)(?:/|$)|login/sso/redirect|register)"),
            MAIN,
        ),
        regex("Main only: OpenID user info for federation.", "^/_matrix/federation/v1/openid/userinfo$".into(), MAIN),
        regex(
            "Media: the legacy, client and federation media APIs.",
            "^/_matrix/(?:media|client/v1/media|federation/v1/media)/".into(),
            MEDIA,
        ),
        Route {
            comment: "Media admin, quarantine included (the media worker is a quarantined_media_changes writer).",
            matcher: "~ \"^/_synapse/admin/v1/(?:purge_media_cache$|room/[^/]+/media|user/[^/]+/media|media/|quarantine_media/|users/[^/]+/media$)\"".into(),
            upstream: MEDIA,
            private: true,
        },
        regex(
            "Stream writer: typing, receipts and read markers of a room.",
            format!("{CLIENT}/rooms/[^/]+/(?:typing|receipt|read_markers)"),
            STREAM_WRITER,
        ),
        regex(
            "Stream writer: account data and tags, to-device messages, presence.",
            format!("{CLIENT}/(?:.*/tags|.*/account_data|sendToDevice/|presence/)"),
            STREAM_WRITER,
        ),
        regex(
            "Sync workers: sync, events, initial sync, user directory search.",
            format!("{CLIENT}/(?:sync|events|initialSync|rooms/[^/]+/initialSync|user_directory/search)$"),
            CLIENT_SYNC,
        ),
        regex(
            "Sync workers: simplified sliding sync.",
            "^/_matrix/client/unstable/org\\.matrix\\.simplified_msc3575/sync$".into(),
            CLIENT_SYNC,
        ),
        regex("Room workers: client requests naming a room ID.", without_capture(client_room), ROOMS),
        regex("Room workers: federation requests naming a room ID.", without_capture(federation_room), ROOMS),
        regex(
            "Federation readers: inbound transactions and every other federation request, server keys.",
            "^/_matrix/(?:federation|key)/".into(),
            FEDERATION_READER,
        ),
    ];
    routes.push(Route {
        comment: "Everything else of the client API goes to main.",
        matcher: "/_matrix/".into(),
        upstream: MAIN,
        private: false,
    });
    routes.push(Route {
        comment: "Synapse's own client pages (SSO, email validation, ...) are public.",
        matcher: "/_synapse/client/".into(),
        upstream: MAIN,
        private: false,
    });
    routes.push(Route {
        comment: "The admin API is private.",
        matcher: "/_synapse/admin/".into(),
        upstream: MAIN,
        private: true,
    });
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_names_an_upstream_that_exists() {
        let names = [
            MAIN,
            STREAM_WRITER,
            CLIENT_SYNC,
            ROOMS,
            FEDERATION_READER,
            MEDIA,
        ];
        for route in routes() {
            assert!(names.contains(&route.upstream), "{}", route.matcher);
        }
    }

    #[test]
    fn the_room_locations_and_the_hash_map_use_the_same_patterns() {
        let routes = routes();
        for pattern in room_patterns() {
            let location = pattern.replace("(?<room_id>", "(?:");
            assert!(
                routes.iter().any(|r| r.matcher.contains(&location)),
                "{location}"
            );
        }
    }
}
