//! `[radius]`: where the accounting listener binds, which NAS may send (each with its own
//! shared secret, read from a file: a secret never sits in quid.toml), and how a request
//! names its subscriber.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, de};

use super::attributes::SubscriberAttribute;

/// `[radius]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusConfig {
    /// UDP address of the accounting listener (`"0.0.0.0:1813"`).
    pub listen: SocketAddr,
    /// Which attribute holds the subscriber's id (default `user-name`).
    #[serde(default)]
    pub subscriber_attribute: SubscriberAttribute,
    /// Refuse requests without a Message-Authenticator (every client; a client may set it too).
    #[serde(default)]
    pub require_message_authenticator: bool,
    /// Seconds a request is remembered to answer its retransmissions again (RFC 5080 2.2.2).
    #[serde(default = "default_duplicate_window", deserialize_with = "window")]
    pub duplicate_window_secs: u64,
    /// Seconds a stopped session is remembered (so its replayed packets change nothing), and
    /// the oldest Event-Timestamp a new session may carry.
    #[serde(default = "default_replay_window", deserialize_with = "window")]
    pub replay_window_secs: u64,
    /// Most sessions followed at once (live and recently stopped).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// The NASes allowed to send, by source address or prefix.
    #[serde(rename = "client", default)]
    pub clients: Vec<ClientConfig>,
}

/// `[[radius.client]]`: one NAS or a prefix of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Source address (`192.0.2.1`) or prefix (`192.0.2.0/28`) the client sends from.
    #[serde(deserialize_with = "client_address")]
    pub address: IpNet,
    /// File holding the shared secret (its first line); relative to the config file.
    pub secret_file: PathBuf,
    /// Refuse this client's requests without a Message-Authenticator.
    #[serde(default)]
    pub require_message_authenticator: bool,
}

fn default_duplicate_window() -> u64 {
    30
}

fn default_replay_window() -> u64 {
    86_400
}

fn default_max_sessions() -> usize {
    1 << 20
}

fn window<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if !(1..=30 * 86_400).contains(&v) {
        return Err(de::Error::custom(format!(
            "must be between 1 and 2592000 seconds (30 days), got {v}"
        )));
    }
    Ok(v)
}

fn client_address<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let s = String::deserialize(d)?;
    let net = match s.parse::<IpAddr>() {
        Ok(ip) => IpNet::from(ip),
        Err(_) => s.parse::<IpNet>().map_err(|_| {
            de::Error::custom(format!(
                "`{s}` is not an address or prefix (write 192.0.2.1, 192.0.2.0/28 or 2001:db8::/64)"
            ))
        })?,
    };
    if net.trunc() != net {
        return Err(de::Error::custom(format!(
            "`{s}` has host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Why the clients cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    #[error("[radius] has no [[radius.client]]: add one with the NAS's address and a secret_file")]
    NoClients,
    #[error(
        "radius.client[{index}]: address {address} is also radius.client[{first}]'s: give each NAS one entry"
    )]
    Repeated {
        index: usize,
        first: usize,
        address: IpNet,
    },
    #[error("radius.client[{index}]: {source}")]
    Secret { index: usize, source: SecretError },
}

/// One loaded client.
#[derive(Clone)]
pub struct Client {
    /// The addresses it sends from.
    pub address: IpNet,
    /// Its shared secret.
    pub secret: Vec<u8>,
    /// Whether its requests need a Message-Authenticator.
    pub require_message_authenticator: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of every log line.
        f.debug_struct("Client")
            .field("address", &self.address)
            .field(
                "require_message_authenticator",
                &self.require_message_authenticator,
            )
            .finish_non_exhaustive()
    }
}

/// The clients, found by the most specific prefix holding a source address.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Most specific first.
    by_length: Vec<Client>,
}

impl Clients {
    /// Reads every client's secret (the file's first line, without its line end).
    pub fn load(config: &RadiusConfig) -> Result<Clients, ClientsError> {
        if config.clients.is_empty() {
            return Err(ClientsError::NoClients);
        }
        let mut loaded: Vec<Client> = Vec::with_capacity(config.clients.len());
        for (index, c) in config.clients.iter().enumerate() {
            if let Some(first) = config.clients[..index]
                .iter()
                .position(|o| o.address == c.address)
            {
                return Err(ClientsError::Repeated {
                    index,
                    first,
                    address: c.address,
                });
            }
            let secret = read_secret(&c.secret_file)
                .map_err(|source| ClientsError::Secret { index, source })?;
            loaded.push(Client {
                address: c.address,
                secret,
                require_message_authenticator: c.require_message_authenticator
                    || config.require_message_authenticator,
            });
        }
        loaded.sort_by_key(|c| std::cmp::Reverse(c.address.prefix_len()));
        Ok(Clients { by_length: loaded })
    }

    /// The client `ip` belongs to (IPv4-mapped IPv6 sources count as IPv4).
    pub fn find(&self, ip: IpAddr) -> Option<&Client> {
        let ip = ip.to_canonical();
        self.by_length.iter().find(|c| c.address.contains(&ip))
    }
}

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret_file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret_file {path} is empty: write the shared secret on its first line")]
    Empty { path: PathBuf },
    #[error("secret_file {path} is readable by everyone: chmod o-rwx it")]
    WorldReadable { path: PathBuf },
}

/// Reads a shared secret: the file's first line without its line end. A file everyone may
/// read, or an empty first line, is refused.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    use std::os::unix::fs::PermissionsExt as _;
    let read = |source| SecretError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(SecretError::WorldReadable {
            path: path.to_owned(),
        });
    }
    let text = std::fs::read(path).map_err(read)?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(SecretError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(line.to_vec())
}

impl RadiusConfig {
    /// Makes the secret files' relative paths relative to `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        for c in &mut self.clients {
            if c.secret_file.is_relative() {
                c.secret_file = base.join(&c.secret_file);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn parse(text: &str) -> Result<RadiusConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn secret(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn clients_are_found_by_their_most_specific_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let wide = secret(dir.path(), "wide", "wide-secret\n", 0o640);
        secret(dir.path(), "one", "one-secret\r\nignored", 0o600);
        let mut c = parse(&format!(
            "listen = \"127.0.0.1:1813\"\nsubscriber_attribute = \"calling-station-id\"\n\
             [[client]]\naddress = \"192.0.2.0/24\"\nsecret_file = {wide:?}\n\
             [[client]]\naddress = \"192.0.2.7\"\nsecret_file = \"one\"\nrequire_message_authenticator = true\n"
        ))
        .unwrap();
        c.resolve_paths(dir.path());
        assert_eq!(
            c.subscriber_attribute,
            SubscriberAttribute::CallingStationId
        );
        assert_eq!(c.duplicate_window_secs, 30);
        let clients = Clients::load(&c).unwrap();
        let seven = clients.find("192.0.2.7".parse().unwrap()).unwrap();
        assert_eq!(seven.secret, b"one-secret");
        assert!(seven.require_message_authenticator);
        let mapped = clients.find("::ffff:192.0.2.8".parse().unwrap()).unwrap();
        assert_eq!(mapped.secret, b"wide-secret");
        assert!(!mapped.require_message_authenticator);
        assert!(clients.find("198.51.100.1".parse().unwrap()).is_none());
        assert!(!format!("{seven:?}").contains("one-secret"));
    }

    #[test]
    fn bad_client_entries_are_refused_with_what_to_do() {
        assert!(parse("listen = \"127.0.0.1:1813\"\n[[client]]\naddress = \"192.0.2.1/24\"\nsecret_file = \"s\"\n")
            .unwrap_err()
            .contains("did you mean 192.0.2.0/24"));
        assert!(parse("listen = \"127.0.0.1:1813\"\n[[client]]\naddress = \"nas-1\"\nsecret_file = \"s\"\n")
            .unwrap_err()
            .contains("not an address or prefix"));
        assert!(
            parse("listen = \"127.0.0.1:1813\"\nsecret = \"x\"\n")
                .unwrap_err()
                .contains("unknown field `secret`")
        );
        assert!(
            parse("listen = \"127.0.0.1:1813\"\nduplicate_window_secs = 0\n")
                .unwrap_err()
                .contains("between 1 and")
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = secret(dir.path(), "empty", "\n", 0o600);
        let open = secret(dir.path(), "open", "x\n", 0o644);
        let load = |clients: &str| {
            let c = parse(&format!("listen = \"127.0.0.1:1813\"\n{clients}")).unwrap();
            Clients::load(&c).unwrap_err().to_string()
        };
        assert!(load("").contains("no [[radius.client]]"));
        assert!(
            load(&format!(
                "[[client]]\naddress = \"192.0.2.1\"\nsecret_file = {empty:?}\n"
            ))
            .contains("is empty")
        );
        assert!(
            load(&format!(
                "[[client]]\naddress = \"192.0.2.1\"\nsecret_file = {open:?}\n"
            ))
            .contains("chmod o-rwx")
        );
        assert!(
            load("[[client]]\naddress = \"192.0.2.1\"\nsecret_file = \"/nonexistent/s\"\n")
                .contains("cannot read secret_file")
        );
        let good = secret(dir.path(), "good", "x\n", 0o600);
        assert!(load(&format!(
            "[[client]]\naddress = \"192.0.2.1\"\nsecret_file = {good:?}\n[[client]]\naddress = \"192.0.2.1/32\"\nsecret_file = {good:?}\n"
        ))
        .contains("radius.client[1]: address 192.0.2.1/32 is also radius.client[0]'s"));
    }
}
