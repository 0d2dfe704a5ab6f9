//! Kafka's listeners: `listeners`, `advertised.listeners` and
//! `listener.security.protocol.map`. Each listener has a name, a security protocol, the
//! address it binds and the address clients are told; a client is always told the
//! addresses of the listener it connected to, so a plaintext listener on loopback and a
//! TLS one outside can serve the same brokers.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use coordinator::Endpoint;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            other => Err(format!(
                "unknown security protocol {other:?} (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            )),
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    pub advertised: Endpoint,
}

/// The file's listener keys, as given; [`resolve`] checks them together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerSettings {
    pub listeners: Option<String>,
    pub advertised_listeners: Option<String>,
    pub security_protocol_map: Option<String>,
}

/// `NAME://HOST:PORT` items of a comma-separated list.
fn parse_addresses(key: &str, value: &str) -> Result<Vec<(String, String, u16)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (name, address) = item
                .split_once("://")
                .ok_or_else(|| format!("{key}: {item:?} is not NAME://HOST:PORT"))?;
            let (host, port) = address
                .rsplit_once(':')
                .ok_or_else(|| format!("{key}: {item:?} has no port"))?;
            let port = port
                .parse()
                .map_err(|_| format!("{key}: {item:?} has a bad port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Ok((name.to_string(), host.to_string(), port))
        })
        .collect()
}

/// Kafka's default map: each protocol is also a listener name.
const DEFAULT_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

/// `listener.security.protocol.map` (or Kafka's default): each listener name's protocol.
fn protocol_map(settings: &ListenerSettings) -> Result<BTreeMap<String, String>, String> {
    let map = settings
        .security_protocol_map
        .as_deref()
        .unwrap_or(DEFAULT_PROTOCOL_MAP);
    let mut protocols = BTreeMap::new();
    for item in map.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, protocol) = item.split_once(':').ok_or_else(|| {
            format!("listener.security.protocol.map: {item:?} is not NAME:PROTOCOL")
        })?;
        protocols.insert(name.trim().to_string(), protocol.trim().to_string());
    }
    Ok(protocols)
}

/// The security protocol of listener `name` (of this broker or another: brokers share the
/// map).
pub fn protocol_of(settings: &ListenerSettings, name: &str) -> Result<SecurityProtocol, String> {
    let protocols = protocol_map(settings)?;
    let protocol = protocols.get(name).ok_or_else(|| {
        format!("listener {name} has no security protocol in listener.security.protocol.map")
    })?;
    SecurityProtocol::parse(protocol)
}

/// The listeners the file describes; None when it sets no `listeners` (the command line's
/// single PLAINTEXT listener applies then).
pub fn resolve(settings: &ListenerSettings) -> Result<Option<Vec<Listener>>, String> {
    let Some(listeners) = &settings.listeners else {
        if settings.advertised_listeners.is_some() {
            return Err("advertised.listeners needs listeners".to_string());
        }
        return Ok(None);
    };
    let protocols = protocol_map(settings)?;
    let advertised = match &settings.advertised_listeners {
        Some(value) => parse_addresses("advertised.listeners", value)?,
        None => Vec::new(),
    };
    let mut resolved: Vec<Listener> = Vec::new();
    for (name, host, port) in parse_addresses("listeners", listeners)? {
        if resolved.iter().any(|l| l.name == name) {
            return Err(format!("listeners: {name} appears twice"));
        }
        let protocol = protocols
            .get(&name)
            .ok_or_else(|| {
                format!(
                    "listener {name} has no security protocol in listener.security.protocol.map"
                )
            })
            .and_then(|protocol| SecurityProtocol::parse(protocol))?;
        let bind_host = if host.is_empty() { "0.0.0.0" } else { &host };
        let bind: SocketAddr = format!("{bind_host}:{port}")
            .parse()
            .or_else(|_| format!("[{bind_host}]:{port}").parse())
            .map_err(|_| format!("listeners: {name} binds {host:?}, not an IP address"))?;
        let advertised = match advertised.iter().find(|(n, ..)| *n == name) {
            Some((_, host, port)) => Endpoint {
                listener: name.clone(),
                host: host.clone(),
                port: i32::from(*port),
            },
            None if bind.ip().is_unspecified() => {
                return Err(format!(
                    "listener {name} binds every address: advertised.listeners must say the \
                     address clients use"
                ))
            }
            None => Endpoint {
                listener: name.clone(),
                host: bind.ip().to_string(),
                port: i32::from(bind.port()),
            },
        };
        resolved.push(Listener {
            name,
            protocol,
            bind,
            advertised,
        });
    }
    if resolved.is_empty() {
        return Err("listeners is empty".to_string());
    }
    if let Some((name, ..)) = advertised
        .iter()
        .find(|(n, ..)| !resolved.iter().any(|l| l.name == *n))
    {
        return Err(format!(
            "advertised.listeners names {name}, which is not in listeners"
        ));
    }
    Ok(Some(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(listeners: &str, advertised: Option<&str>, map: Option<&str>) -> ListenerSettings {
        ListenerSettings {
            listeners: Some(listeners.to_string()),
            advertised_listeners: advertised.map(str::to_string),
            security_protocol_map: map.map(str::to_string),
        }
    }

    #[test]
    fn listeners_take_kafkas_names_protocols_and_advertised_addresses() {
        let resolved = resolve(&settings(
            "INTERNAL://127.0.0.1:9092,EXTERNAL://0.0.0.0:9093",
            Some("EXTERNAL://kafka.example.com:443"),
            Some("INTERNAL:PLAINTEXT,EXTERNAL:SSL"),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(resolved.len(), 2);
        assert_eq!(resolved[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(resolved[0].advertised.host, "127.0.0.1");
        assert_eq!(resolved[1].protocol, SecurityProtocol::Ssl);
        assert_eq!(resolved[1].bind, "0.0.0.0:9093".parse().unwrap());
        assert_eq!(
            resolved[1].advertised,
            Endpoint {
                listener: "EXTERNAL".into(),
                host: "kafka.example.com".into(),
                port: 443
            }
        );
        // The default map names listeners after their protocols.
        let resolved = resolve(&settings(
            "SSL://127.0.0.1:9093,SASL_SSL://127.0.0.1:9094",
            None,
            None,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(resolved[0].protocol, SecurityProtocol::Ssl);
        assert_eq!(resolved[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(resolve(&ListenerSettings::default()).unwrap(), None);
    }

    #[test]
    fn bad_listener_settings_say_what_is_wrong() {
        for (s, reason) in [
            (
                settings("PLAINTEXT://0.0.0.0:9092", None, None),
                "advertised.listeners must",
            ),
            (
                settings("FOO://127.0.0.1:1", None, None),
                "no security protocol",
            ),
            (settings("PLAINTEXT://127.0.0.1", None, None), "no port"),
            (settings("127.0.0.1:9092", None, None), "NAME://HOST:PORT"),
            (
                settings("PLAINTEXT://localhost:9092", None, None),
                "not an IP address",
            ),
            (
                settings("PLAINTEXT://127.0.0.1:1", Some("SSL://a:1"), None),
                "not in listeners",
            ),
            (
                settings("A://127.0.0.1:1", None, Some("A:TLS")),
                "unknown security protocol",
            ),
        ] {
            let err = resolve(&s).unwrap_err();
            assert!(err.contains(reason), "{err}");
        }
    }
}
