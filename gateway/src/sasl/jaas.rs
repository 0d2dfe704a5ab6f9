//! Kafka's `sasl.jaas.config` values, as a broker's config sets them per listener and
//! mechanism (`listener.name.{listener}.{mechanism}.sasl.jaas.config`): the user name and
//! password this broker logs in to other brokers with.

use std::fmt;

use regex::Regex;

/// A user name and password; the password never shows in logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"[hidden]")
            .finish()
    }
}

/// `org.apache.kafka.common.security.scram.ScramLoginModule required username="admin"
/// password="secret";` (or PlainLoginModule): the module's `username` and `password`.
pub fn parse(value: &str) -> Result<Login, String> {
    let module = Regex::new(
        r#"(?s)^\s*org\.apache\.kafka\.common\.security\.(scram\.ScramLoginModule|plain\.PlainLoginModule)\s+required\b(.*);\s*$"#,
    )
    .expect("a valid pattern");
    let options = module.captures(value).ok_or_else(|| {
        "expected `org.apache.kafka.common.security.scram.ScramLoginModule required \
         username=\"...\" password=\"...\";` (or plain.PlainLoginModule)"
            .to_string()
    })?;
    let option = Regex::new(r#"(\w+)\s*=\s*"([^"]*)""#).expect("a valid pattern");
    let mut username = None;
    let mut password = None;
    for found in option.captures_iter(&options[2]) {
        match &found[1] {
            "username" => username = Some(found[2].to_string()),
            "password" => password = Some(found[2].to_string()),
            _ => {}
        }
    }
    match (username, password) {
        (Some(username), Some(password)) => Ok(Login { username, password }),
        _ => Err("the login module needs username=\"...\" and password=\"...\"".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_module_gives_its_user_name_and_password() {
        let login = parse(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="s3cret";"#,
        )
        .unwrap();
        assert_eq!(login.username, "broker");
        assert_eq!(login.password, "s3cret");
        assert!(!format!("{login:?}").contains("s3cret"));
        let plain = parse(
            "org.apache.kafka.common.security.plain.PlainLoginModule required\n  \
             username=\"b\"\n  password=\"p\"\n  user_b=\"p\";",
        )
        .unwrap();
        assert_eq!(
            (plain.username.as_str(), plain.password.as_str()),
            ("b", "p")
        );
        for bad in [
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="b";"#,
            r#"com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true;"#,
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="b" password="p""#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
