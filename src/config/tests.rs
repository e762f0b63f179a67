//! Config loading: defaults, the example file, TOML and environment overrides.
use super::*;

#[test]
fn defaults_file_env_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "[server]\nbind = \"0.0.0.0:9000\"\n[rtc]\nudp_port = 9001\n[keys]\nAPIk = \"s\"\n",
    )
    .unwrap();
    let env = vec![
        ("PARLOR_RTC_UDP_PORT".to_string(), "9002".to_string()),
        ("PARLOR_TURN_SECRETS".to_string(), "a, b".to_string()),
        ("PARLOR_TURN_ENABLED".to_string(), "false".to_string()),
        (
            "PARLOR_DATABASE_URL".to_string(),
            "postgres://x/y".to_string(),
        ),
        ("UNRELATED".to_string(), "1".to_string()),
        ("PARLOR_KEYS".to_string(), "APIk:s, APIz:t".to_string()),
        ("PARLOR_HOME".to_string(), "/srv/parlor-home".to_string()),
    ];
    let c = Config::load(Some(&p), env).unwrap();
    assert_eq!(c.server.bind, "0.0.0.0:9000");
    assert_eq!(c.rtc.udp_port, 9002);
    assert_eq!(c.turn.secrets, vec!["a", "b"]);
    assert!(!c.turn.enabled);
    assert_eq!(c.database.url, "postgres://x/y");
    assert_eq!(c.keys.get("APIk").map(String::as_str), Some("s"));
    assert_eq!(c.keys.get("APIz").map(String::as_str), Some("t"));
    assert_eq!(c.room.max_participants, 100);
    assert_eq!(c.home_dir(), PathBuf::from("/srv/parlor-home"));
}

#[test]
fn bad_values_are_errors() {
    let env = vec![("PARLOR_RTC_UDP_PORT".to_string(), "abc".to_string())];
    assert!(Config::load(None, env).is_err());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(&p, "[server]\nbindd = \"x\"\n").unwrap();
    assert!(Config::load(Some(&p), Vec::new()).is_err());
}

fn load_file(text: &str) -> Result<Loaded, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("parlor.toml");
    std::fs::write(&p, text).unwrap();
    Config::load_report(Some(&p), Vec::new())
}

#[test]
fn edit_distance_and_closest() {
    assert_eq!(edit_distance("bind", "bind"), 0);
    assert_eq!(edit_distance("bindd", "bind"), 1);
    assert_eq!(edit_distance("udp_prot", "udp_port"), 2);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(closest("bnid", ["bind", "public_url"]), Some("bind"));
    assert_eq!(closest("zzzzzz", ["bind", "public_url"]), None);
}

#[test]
fn unknown_file_key_names_it_and_the_closest_known_key() {
    let e = load_file("[server]\nbindd = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown key `server.bindd`"), "{e}");
    assert!(e.contains("did you mean `server.bind`?"), "{e}");
    assert!(e.contains("parlor.toml"), "{e}");
    // A key in the wrong section points to where it lives.
    let e = load_file("[server]\ndata_dir = \"/x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `storage.data_dir`?"), "{e}");
    // A misspelt section.
    let e = load_file("[sever]\nbind = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown key `sever`") && e.contains("did you mean [server]?"),
        "{e}"
    );
    // A top-level key that belongs to a section.
    let e = load_file("udp_port = 1\n").unwrap_err().to_string();
    assert!(e.contains("did you mean `rtc.udp_port`?"), "{e}");
    // Nothing close: the section's keys are listed.
    let e = load_file("[metrics]\nqqqqqqqq = 1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("[metrics] keys: token"), "{e}");
    // API key ids are free-form.
    let l = load_file("[keys]\nAPIanything = \"s\"\n").unwrap();
    assert_eq!(l.config.keys.len(), 1);
    assert!(!l.keys_from_env);
}

#[test]
fn unknown_env_key_in_a_known_section_warns_with_the_closest_key() {
    let env = vec![
        ("PARLOR_RTC_UDP_PROT".to_string(), "9".to_string()),
        ("PARLOR_SERVER_ZZZZZZZZZZ".to_string(), "9".to_string()),
        ("PARLOR_TEST_PG_URL".to_string(), "postgres://x".to_string()),
        ("PARLOR_LOG".to_string(), "debug".to_string()),
        ("PARLOR_CONFIG".to_string(), "x.toml".to_string()),
        ("PARLOR_RTC_TCP_PORT".to_string(), "9".to_string()),
    ];
    let l = Config::load_report(None, env).unwrap();
    assert_eq!(l.config.rtc.tcp_port, 9);
    assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
    assert!(
        l.warnings[0].contains("PARLOR_RTC_UDP_PROT")
            && l.warnings[0].contains("did you mean PARLOR_RTC_UDP_PORT?"),
        "{:?}",
        l.warnings
    );
    assert!(
        l.warnings[1].contains("PARLOR_SERVER_ZZZZZZZZZZ")
            && l.warnings[1].contains("[server] keys: bind,"),
        "{:?}",
        l.warnings
    );
    let l = Config::load_report(None, vec![("PARLOR_KEYS".into(), "k:s".into())]).unwrap();
    assert!(l.keys_from_env && l.warnings.is_empty());
}

#[test]
fn example_config_parses_and_matches_defaults() {
    let example = include_str!("../../parlor.example.toml");
    let parsed: Config = toml::from_str(example).unwrap();
    assert_eq!(parsed, Config::default());
}
